"""The RSGI application Granian serves. The route table is the `_ROUTES` dict; anything else is
forwarded to the control plane (when one is configured) or answered 404."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from dragonfly.config import Settings
from dragonfly.errors import DragonflyError, InternalError, NotFound
from dragonfly.gateway import catalog, proxy
from dragonfly.gateway.chat import Inference
from dragonfly.gateway.http import send_error, send_json
from dragonfly.gateway.runtime import Runtime
from dragonfly.gateway.speech import Speech
from dragonfly.ids import new_id
from dragonfly.lifetime import die_with_parent

log = logging.getLogger("dragonfly.gateway")

Handler = Callable[[Any, Any, str], Awaitable[None]]


class GatewayApp:
    def __init__(self, settings: Settings, control_url: str | None) -> None:
        self.settings = settings
        self.rt = Runtime(settings)
        self.control_url = control_url
        chat = Inference(self.rt, "chat", "/chat/completions")
        embeddings = Inference(self.rt, "embeddings", "/embeddings")
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): chat,
            ("POST", "/v1/embeddings"): embeddings,
            ("POST", "/v1/audio/speech"): Speech(self.rt),
            ("GET", "/v1/models"): lambda s, p, r: catalog.list_models(self.rt, s, p, r),
            ("GET", "/v1/generation"): lambda s, p, r: catalog.get_generation(self.rt, s, p, r),
            ("GET", "/healthz"): self._health,
        }

    # --- RSGI hooks (Granian calls init before the loop runs and del after it stopped) ---
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.rt.start())
        tune_gc()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.rt.stop())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        request_id = new_id()
        if scope.proto != "http":
            return
        path = scope.path
        handler = self._routes.get((scope.method, path))
        try:
            if handler is not None:
                await handler(scope, proto, request_id)
            elif self.control_url and (_control_owned(path) or not path.startswith("/v1/")):
                await proxy.forward(self.rt, scope, proto, request_id, self.control_url)
            else:
                raise NotFound(f"Unknown path {path}.")
        except DragonflyError as err:
            send_error(proto, err, request_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope.method, path)
            send_error(proto, InternalError("Internal error."), request_id)

    async def _health(self, scope: Any, proto: Any, request_id: str) -> None:
        settler = self.rt.settler
        body = {
            "status": "ok",
            "snapshot_seq": self.rt.snapshot.seq,
            "settlement": {
                "durable_point": settler.durable_point,
                "batches": settler.batches,
                "trades": settler.trades,
                "uncommitted": settler.uncommitted,
                "refused": settler.refused,
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
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    return GatewayApp(settings, os.environ.get("DRAGONFLY_CONTROL_URL") or None)
