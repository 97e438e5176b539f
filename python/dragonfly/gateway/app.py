"""The RSGI application Granian serves. The route table is the `_routes` dict; anything else is
forwarded to the control plane (when one is configured) or answered 404.

Overload: past `max_inflight` requests in flight in this worker (`DRAGONFLY_MAX_INFLIGHT`), the next is
answered 503 `service_unavailable` with `retry-after` at once, before any work (as Envoy's overload
manager sheds load), instead of queueing without bound; /healthz and /metrics are neither counted nor
refused. The count is one increment and one decrement per request. Drain on SIGTERM: gateway/drain.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dragonfly import logfmt
from dragonfly.config import Settings
from dragonfly.errors import DragonflyError, InternalError, NotFound, ServiceUnavailable
from dragonfly.gateway import catalog, proxy
from dragonfly.gateway.chat import Inference
from dragonfly.gateway.drain import Drain
from dragonfly.gateway.http import send_error, send_json
from dragonfly.gateway.replies import DRAINED_MESSAGE
from dragonfly.gateway.runtime import Runtime
from dragonfly.gateway.speech import Speech
from dragonfly.gateway.telemetry import CONTROL_PLANE, UNKNOWN_ROUTE
from dragonfly.ids import new_id
from dragonfly.lifetime import die_with_parent

log = logging.getLogger("dragonfly.gateway")

Handler = Callable[[Any, Any, str], Awaitable[None]]

OVERLOADED_MESSAGE = "The gateway is at capacity; retry the request."


class GatewayApp:
    def __init__(self, settings: Settings, control_url: str | None, control_start_wait_s: float = 0) -> None:
        self.settings = settings
        self.rt = Runtime(settings)
        self.control_url = control_url
        # > 0 (set by `serve`, which starts both planes at once): the worker waits up to this long for
        # the control plane to listen before it serves.
        self.control_start_wait_s = control_start_wait_s
        chat = Inference(self.rt, "chat", "/chat/completions")
        embeddings = Inference(self.rt, "embeddings", "/embeddings")
        # Probes are answered whatever the load: neither counted in flight nor refused.
        self._health_probe: Handler = self._health
        self._metrics_probe: Handler = self.rt.telemetry.serve_metrics
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): chat,
            ("POST", "/v1/embeddings"): embeddings,
            ("POST", "/v1/audio/speech"): Speech(self.rt),
            ("GET", "/v1/models"): lambda s, p, r: catalog.list_models(self.rt, s, p, r),
            ("GET", "/v1/generation"): lambda s, p, r: catalog.get_generation(self.rt, s, p, r),
            ("GET", "/healthz"): self._health_probe,
            ("GET", "/metrics"): self._metrics_probe,
        }
        # Each route's request counter, bound once (gateway/telemetry.py).
        telemetry = self.telemetry = self.rt.telemetry
        self._answered = {key: telemetry.http_child(key[1]) for key in self._routes}
        self._forwarded = telemetry.http_child(CONTROL_PLANE)
        # Requests in flight in this worker (probes aside), and how many it takes (0 once draining).
        self.inflight = 0
        self.max_inflight = settings.max_inflight
        self._refusal = OVERLOADED_MESSAGE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.drain = Drain(
            settings.drain_timeout_s,
            inflight=lambda: self.inflight,
            refuse_new=self._refuse_new,
            cut=self.rt.upstream.drain,
            stop=self._stop_runtime,
        )

    # --- RSGI hooks (Granian calls init before the loop runs and del after it stopped) ---
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.run_until_complete(self.rt.start())
        if self.control_url and self.control_start_wait_s > 0:
            loop.run_until_complete(proxy.wait_for_control_plane(self.control_url, self.control_start_wait_s))
        tune_gc()
        self.drain.install(loop)  # after Granian's own signal handlers: SIGTERM drains with a deadline

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.drain.cancel()
        loop.run_until_complete(self._stop_runtime())

    def _stop_runtime(self) -> asyncio.Task[None]:
        """Stop the runtime once, whether Granian stopped (`__rsgi_del__`) or the drain ends first."""
        if self._stopping is None:
            assert self._loop is not None
            self._stopping = self._loop.create_task(self.rt.stop(), name="runtime-stop")
        return self._stopping

    def _refuse_new(self) -> None:
        self.max_inflight = 0
        self._refusal = DRAINED_MESSAGE

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        request_id = new_id()
        if scope.proto != "http":
            return
        path = scope.path
        key = (scope.method, path)
        handler = self._routes.get(key)
        started = time.perf_counter_ns()
        if handler is self._health_probe or handler is self._metrics_probe:
            counted = False
        elif self.inflight >= self.max_inflight:
            # Overloaded (or draining): refused before any work, so it costs nothing to turn away.
            err = ServiceUnavailable(self._refusal)
            send_error(proto, err, request_id)
            route = path if handler is not None else CONTROL_PLANE if self._forwards(path) else UNKNOWN_ROUTE
            self.telemetry.request_failed(request_id, route, err, started, None)
            return
        else:
            counted = True
            self.inflight += 1
        forwarded = False
        try:
            if handler is not None:
                await handler(scope, proto, request_id)
                self._answered[key].inc()
            elif self.control_url and (_control_owned(path) or not path.startswith("/v1/")):
                forwarded = True
                await proxy.forward(self.rt, scope, proto, request_id, self.control_url)
                self._forwarded.inc()
            else:
                raise NotFound(f"Unknown path {path}.")
        except DragonflyError as err:
            send_error(proto, err, request_id)
            route = path if handler is not None else CONTROL_PLANE if forwarded else UNKNOWN_ROUTE
            self.telemetry.request_failed(request_id, route, err, started, None)
        except Exception as exc:
            log.exception("unhandled error in %s %s", scope.method, path)
            internal = InternalError("Internal error.")
            send_error(proto, internal, request_id)
            route = path if handler is not None else CONTROL_PLANE if forwarded else UNKNOWN_ROUTE
            self.telemetry.request_failed(request_id, route, internal, started, exc)
        finally:
            if counted:
                self.inflight -= 1

    def _forwards(self, path: str) -> bool:
        return bool(self.control_url) and (_control_owned(path) or not path.startswith("/v1/"))

    async def _health(self, scope: Any, proto: Any, request_id: str) -> None:
        settler = self.rt.settler
        body = {
            "status": "ok",
            "snapshot_seq": self.rt.snapshot.seq,
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "settlement": {
                "durable_point": settler.durable_point,
                "batches": settler.batches,
                "trades": settler.trades,
                "uncommitted": settler.uncommitted,
                "refused": settler.refused,
                "lost_in_commit": settler.lost_in_commit,
                "unconfirmed": settler.unconfirmed,
            },
        }
        send_json(proto, 200, body, request_id)


# CPython collects its youngest generation every 700 allocations by default. Requests allocate far more
# than that and make few reference cycles; with 2,000 open streams (~140k tracked objects) the collector
# stopped the worker 3 times for 60-80 ms and ~30 times for 1-3 ms per run (gc.callbacks, measured), and
# every open stream stalled with it. What start-up built (modules, the first snapshot) lives as long as
# the process, so it is frozen out of every scan. Older generations keep CPython's ratios (10, 10).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _control_owned(path: str) -> bool:
    return path.startswith(("/v1/pool/", "/v1/market/", "/api/")) or path in ("/v1/pool", "/v1/market")


def create_app() -> GatewayApp:
    """Granian factory (`dragonfly.gateway.app:create_app`): settings from the environment."""
    settings = Settings.from_env()
    die_with_parent()  # a Granian worker goes when its main process goes (dragonfly/lifetime.py)
    logfmt.setup(settings.log_level, settings.log_format)
    return GatewayApp(
        settings,
        os.environ.get("DRAGONFLY_CONTROL_URL") or None,
        float(os.environ.get("DRAGONFLY_CONTROL_START_WAIT_S") or 0),
    )
