"""The data plane's Prometheus metrics and its one log line per request (docs/operator.md, "Metrics and
logs").

**Processes.** With `PROMETHEUS_MULTIPROC_DIR` set (`dragonfly serve` makes a fresh one per run and gives
it to every child) prometheus_client keeps each Granian worker's values in memory-mapped files there, and
`GET /metrics` on any worker answers for all of them (`MultiProcessCollector`); gauges of this kind are
summed over live workers (`livesum`) or their maximum taken (`livemax`), and a worker that stops cleanly
removes its gauges (`mark_process_dead`). Without the directory each worker answers for itself.

**Hot path.** `trade_done` runs once per trade (from `Inference._trade`'s `finally`), the ranking
histogram once per ranking, one counter once per request (`GatewayApp.__rsgi__`). They add to plain
Python numbers (`LocalCounter`, `LocalHistogram`, bound once per label combination and kept), which
`flush` adds to prometheus_client's values every `SAMPLE_EVERY_S` and before this worker answers a
scrape: a value in multiprocess mode is a locked write to a memory-mapped file (~0.7 µs), and a request
makes about ten (`benchmarks/micro/bench_metrics.py`). Another worker's last second may therefore be
missing from an answer; nothing is lost. Labels stay few: model (only models the snapshot lists; anything
a buyer made up is `_other`), listing id, status, error code, route — never a key or an account.

**Sampled, not counted per request.** Holds in flight, the settlement backlog and its lag, and the
settlement writer's counters are read from this worker's objects every `SAMPLE_EVERY_S` and just before
a scrape; listing health comes from the snapshot at scrape time (every worker loads the same one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import sqlite3
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from dragonfly.config import Settings
from dragonfly.errors import DragonflyError, InvalidApiKey, PermissionDenied
from dragonfly.gateway.auth import client_ip
from dragonfly.gateway.http import bearer_token
from dragonfly.ids import now_ms
from dragonfly.logfmt import FastInfo
from dragonfly.logsampling import worth_logging
from dragonfly.storage.ports import DatabaseUnavailable
from dragonfly.storage.state.ports import StateUnavailable

if TYPE_CHECKING:
    from dragonfly.gateway.settlement import SettlementWriter
    from dragonfly.gateway.snapshot import Snapshot
    from dragonfly.gateway.trade import TradeState

log = logging.getLogger("dragonfly.gateway.telemetry")
# The per-request line (INFO): silence it with DRAGONFLY_LOG_LEVEL=warning.
request_log = logging.getLogger("dragonfly.requests")

SAMPLE_EVERY_S = 1.0
OTHER_MODEL = "_other"  # the model label of a request for a model no listing offers
CONTROL_PLANE = "control_plane"  # the route label of a request passed to the control plane
UNKNOWN_ROUTE = "unknown"
# Where a listing's contract stands (domain/health.py); other contract states are not exported.
HEALTH_STATE = {"active": 0, "degraded": 1, "suspended": 2}
# Seconds. Whole requests run from milliseconds (refusals, short answers) to minutes (long streams).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Seconds to a seller's first token / answer head: milliseconds (a cache, the demo) to tens of seconds.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds of one native ranking: ~10 µs for 1,000 listings, ~100 µs for 10,000 (benchmarks/README.md).
RANK_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
MAX_BOUND = 50_000  # label combinations kept bound; past this the cache starts over (children remain)


class Metrics:
    """Every metric the data plane exports, created once per process. `registry` None: multiprocess mode
    (the values live in the directory's files and a `MultiProcessCollector` reads them back)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.trades = Counter(
            "dragonfly_trades",
            "Inference requests that reached routing (each is a trade), by how they ended.",
            ("model", "listing_id", "status", "error_code"),
            registry=r,
        )
        self.http = Counter(
            "dragonfly_http_requests",
            "Requests the data plane answered, by route and error code ('' when it raised none).",
            ("route", "error_code"),
            registry=r,
        )
        self.duration = Histogram(
            "dragonfly_request_duration_seconds",
            "Inference request time, from authentication to the last byte (stream) or the answer.",
            ("model", "status"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "dragonfly_ttft_seconds",
            "Streams: from sending to the seller to the first token relayed to the buyer.",
            ("model",),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "dragonfly_upstream_seconds",
            "Each seller call: time to its answer head (outcome ok) or to its failure.",
            ("listing_id", "outcome"),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.rank = Histogram(
            "dragonfly_rank_seconds",
            "One native ranking of a request's candidate listings (Market.rank).",
            buckets=RANK_BUCKETS,
            registry=r,
        )
        self.holds = Gauge(
            "dragonfly_holds_in_flight",
            "Admitted requests whose hold is not settled yet (balance, budget, concurrency lease).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.uncommitted = Gauge(
            "dragonfly_settlement_uncommitted_trades",
            "Trades durable in the settlement log and not yet committed to the database.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "dragonfly_settlement_lag_seconds",
            "Age of the oldest trade in the settlement log not yet committed to the database.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.batches = Counter(
            "dragonfly_settlement_batches", "Settlement batches committed to the database.", registry=r
        )
        self.committed = Counter(
            "dragonfly_settlement_committed_trades", "Trades committed to the database.", registry=r
        )
        self.refused = Counter(
            "dragonfly_settlement_refused_trades",
            "Trades the database refused for what they are, set aside in the refused file.",
            registry=r,
        )
        self.lost_in_commit = Counter(
            "dragonfly_settlement_lost_commit_trades",
            "Trades whose commit's answer was lost with the database connection, made again to find out.",
            registry=r,
        )
        self.unconfirmed = Counter(
            "dragonfly_settlement_unconfirmed_trades",
            "Trades whose commit could not be confirmed either way (the database stayed unreachable).",
            registry=r,
        )
        self.state_errors = Counter(
            "dragonfly_state_store_errors",
            "State store (Redis) unreachable: admission failed closed, or a re-seed was skipped.",
            ("operation",),
            registry=r,
        )
        self.db_errors = Counter(
            "dragonfly_database_errors",
            "Database failures the data plane met: a trade not recorded, a snapshot poll, a request.",
            ("operation",),
            registry=r,
        )


class _ListingHealth(Collector):
    """`dragonfly_listing_health`: 0 active, 1 degraded, 2 suspended, per listing of the snapshot in use
    (read when scraped, so a listing that left the market leaves the answer)."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "dragonfly_listing_health",
            "Listing contract health: 0 active, 1 degraded, 2 suspended.",
            labels=("listing_id", "model"),
        )
        snap = self._snapshot()
        if snap is not None:
            for listing in snap.listings_by_id.values():
                state = HEALTH_STATE.get(listing.contract_status)
                if state is not None:
                    family.add_metric((listing.id, listing.model), state)
        yield family


class LocalCounter:
    """A counter child's increments since the last flush, as a plain int."""

    __slots__ = ("child", "n", "pending", "queue")

    def __init__(self, child: Any, queue: list[Any]) -> None:
        self.child, self.n, self.pending, self.queue = child, 0, False, queue

    def inc(self, n: int = 1) -> None:
        self.n += n
        if not self.pending:
            self.pending = True
            self.queue.append(self)

    def flush(self) -> None:
        n, self.n, self.pending = self.n, 0, False
        if n:
            self.child.inc(n)


class LocalHistogram:
    """A histogram child's observations since the last flush: a count per bucket and the sum. The flush
    adds them to the child's bucket and sum values (`_buckets`, `_sum`: prometheus_client's own
    attributes, which `observe` itself increments; tests/unit/test_telemetry.py holds them to it)."""

    __slots__ = ("bounds", "child", "counts", "pending", "queue", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...], queue: list[Any]) -> None:
        self.child, self.bounds, self.queue = child, bounds, queue
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.pending = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: the first bound >= value
        self.total += value
        if not self.pending:
            self.pending = True
            self.queue.append(self)

    def flush(self) -> None:
        counts, total = self.counts, self.total
        self.counts, self.total, self.pending = [0] * len(counts), 0.0, False
        buckets = self.child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
        self.child._sum.inc(total)


class _Bound:
    """What one (model, listing, status, error code) combination adds to."""

    __slots__ = ("duration", "trades", "ttft")

    def __init__(self, trades: LocalCounter, duration: LocalHistogram, ttft: LocalHistogram) -> None:
        self.trades, self.duration, self.ttft = trades, duration, ttft


def failure_kind(exc: BaseException | None) -> str | None:
    """`state_store` or `database` when `exc` (or what it was raised from) is that store's failure."""
    depth = 0
    while exc is not None and depth < 4:
        if isinstance(exc, StateUnavailable):
            return "state_store"
        if isinstance(exc, DatabaseUnavailable | sqlite3.Error) or type(exc).__module__.startswith("asyncpg"):
            return "database"
        exc = exc.__cause__ or exc.__context__
        depth += 1
    return None


def is_loopback(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def multiprocess_dir(settings: Settings) -> str | None:
    """The shared directory when multiprocess mode is on in this process, else None."""
    path = settings.metrics_dir
    if not path:
        return None
    if not getattr(prometheus_values.ValueClass, "_multiprocess", False):
        # prometheus_client picks its value class at import, from the environment.
        log.warning("metrics directory given after prometheus_client was imported: this worker's values only")
        return None
    os.makedirs(path, exist_ok=True)
    return path


_LOGGED = "_dragonfly_request_logged"  # set on an exception whose request line is written already


class Telemetry:
    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], Snapshot | None],
        state: Callable[[], object],
        settler: Callable[[], SettlementWriter | None],
    ) -> None:
        self._token = settings.metrics_token
        self._trusted = settings.trusted_proxies
        self._snapshot = snapshot
        self._state = state
        self._settler = settler
        self.dir = multiprocess_dir(settings)
        self.output = CollectorRegistry()  # what /metrics answers
        if self.dir is not None:
            m = Metrics(None)
            MultiProcessCollector(self.output, self.dir)
        else:
            m = Metrics(self.output)
        self.metrics = m
        self.output.register(_ListingHealth(snapshot))
        self._pending: list[LocalCounter | LocalHistogram] = []  # changed since the last flush
        self._locals: dict[tuple[int, tuple[str, ...]], Any] = {}
        # Observed around `Router.candidates` (gateway/chat.py `_candidates`).
        self.rank_time = LocalHistogram(m.rank, RANK_BUCKETS, self._pending)
        self._bound: dict[tuple[str, str, str, str], _Bound] = {}
        self._upstream: dict[tuple[str, str], LocalHistogram] = {}
        self._request_line = FastInfo(request_log)
        self._seen: dict[str, int] = {}  # the settlement writer's counters at the last sample
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    # -- once per request --------------------------------------------------------------------------------

    def _counter(self, metric: Counter, *labels: str) -> LocalCounter:
        key = (id(metric), labels)
        local = self._locals.get(key)
        if local is None:
            local = self._locals[key] = LocalCounter(metric.labels(*labels), self._pending)
        return local

    def _histogram(self, metric: Histogram, bounds: tuple[float, ...], *labels: str) -> LocalHistogram:
        key = (id(metric), labels)
        local = self._locals.get(key)
        if local is None:
            local = self._locals[key] = LocalHistogram(metric.labels(*labels), bounds, self._pending)
        return local

    def http_child(self, route: str, error_code: str = "") -> LocalCounter:
        """The request counter of one (route, error code): the app keeps those of its routes."""
        return self._counter(self.metrics.http, route, error_code)

    def trade_done(
        self, kind: str, trade: TradeState, model: str, outcome: str, error_code: str | None
    ) -> None:
        """Once per trade, from `Inference._trade`'s `finally`: counters, histograms and the request's
        log line. An exception on its way out (`sys.exc_info`) is classified and marked as logged, so
        the app does not log the request again. Never raises."""
        try:
            end = time.perf_counter_ns()
            listing = trade.listing
            listing_id = listing.id if listing is not None else ""
            snap = self._snapshot()
            label = model if snap is not None and model in snap.listings_by_model else OTHER_MODEL
            key = (label, listing_id, outcome, error_code or "")
            bound = self._bound.get(key)
            if bound is None:
                bound = self._bind(key)
            bound.trades.inc()
            bound.duration.observe((end - trade.started_ns) / 1e9)
            if trade.streamed and trade.ttft_ms is not None:
                bound.ttft.observe(trade.ttft_ms / 1000)
            for attempt in trade.attempts:
                if attempt.status != "refused":  # refused at admission: no seller was called
                    up = self._upstream.get((attempt.listing_id, attempt.status))
                    if up is None:
                        up = self._bind_upstream(attempt.listing_id, attempt.status)
                    up.observe(attempt.latency_ms / 1000)
            exc = sys.exc_info()[1] if outcome != "completed" else None
            if exc is not None:
                self._count_failure(exc, "admit", "settle")
                with contextlib.suppress(Exception):
                    setattr(exc, _LOGGED, True)
            if request_log.isEnabledFor(logging.INFO):
                status = exc.status if isinstance(exc, DragonflyError) else 500 if exc is not None else 200
                fields = {
                    "request_id": trade.request_id,
                    "kind": kind,
                    "key_id": trade.key.id,
                    "model": model[:200],
                    "listing_id": listing_id or None,
                    "status": outcome,
                    "http_status": status,
                    "error_code": error_code,
                    "streamed": trade.streamed,
                    "latency_ms": round((end - trade.started_ns) / 1e6, 2),
                    "ttft_ms": trade.ttft_ms,
                    "attempts": len(trade.attempts),
                }
                self._request_line.info("request", fields)
        except Exception as exc:
            self._failed(exc)

    def request_failed(
        self, request_id: str, route: str, err: DragonflyError, started_ns: int, cause: BaseException | None
    ) -> None:
        """The app answered `err`: count it, and write the request's line unless its trade did. `cause`:
        the unexpected exception behind a 500."""
        try:
            self.http_child(route, err.code).inc()
            if cause is not None and failure_kind(cause) == "database":
                self.database_error("request")
            if getattr(err, _LOGGED, False) or not request_log.isEnabledFor(logging.INFO):
                return
            fields = {
                "request_id": request_id,
                "route": route,
                "key_id": None,
                "model": None,
                "listing_id": None,
                "status": "refused" if err.status < 500 else "failed",
                "http_status": err.status,
                "error_code": err.code,
                "latency_ms": round((time.perf_counter_ns() - started_ns) / 1e6, 2),
                "ttft_ms": None,
                "attempts": 0,
            }
            self._request_line.info("request", fields)
        except Exception as exc:
            self._failed(exc)

    def _bind(self, key: tuple[str, str, str, str]) -> _Bound:
        if len(self._bound) >= MAX_BOUND:
            self._bound.clear()
            self._locals.clear()  # what is pending still flushes: the queue holds it
        model, _, status, _ = key
        m = self.metrics
        bound = self._bound[key] = _Bound(
            self._counter(m.trades, *key),
            self._histogram(m.duration, DURATION_BUCKETS, model, status),
            self._histogram(m.ttft, TTFT_BUCKETS, model),
        )
        return bound

    def _bind_upstream(self, listing_id: str, outcome: str) -> LocalHistogram:
        if len(self._upstream) >= MAX_BOUND:
            self._upstream.clear()
        local = self._upstream[(listing_id, outcome)] = self._histogram(
            self.metrics.upstream, TTFT_BUCKETS, listing_id, outcome
        )
        return local

    def _count_failure(self, exc: BaseException, state_op: str, db_op: str) -> None:
        kind = failure_kind(exc)
        if kind == "state_store":
            self.state_store_error(state_op)
        elif kind == "database":
            self.database_error(db_op)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if worth_logging(self.failures):
            log.warning("metrics not recorded: %s", type(exc).__name__)

    # -- failures met elsewhere (runtime.py) -----------------------------------------------------------

    def state_store_error(self, operation: str) -> None:
        self.metrics.state_errors.labels(operation).inc()

    def database_error(self, operation: str) -> None:
        self.metrics.db_errors.labels(operation).inc()

    # -- sampled ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Add what requests counted since the last flush to prometheus_client's values."""
        for local in self._pending:
            local.flush()
        self._pending.clear()

    def sample(self) -> None:
        """Flush, and this worker's holds in flight, settlement backlog and lag, and the settlement
        writer's counters since the last sample."""
        self.flush()
        m = self.metrics
        refs = getattr(self._state(), "_refs", None)  # storage/state/base.py: holds until settled
        m.holds.set(len(refs) if refs is not None else 0)
        settler = self._settler()
        if settler is None:
            return
        m.uncommitted.set(settler.uncommitted)
        backlog = getattr(settler, "_backlog", None)  # log mode: (trade, postings), oldest first
        m.lag.set(max(0.0, (now_ms() - backlog[0][0].settled_at) / 1000) if backlog else 0.0)
        for name, counter in (
            ("batches", m.batches),
            ("trades", m.committed),
            ("refused", m.refused),
            ("lost_in_commit", m.lost_in_commit),
            ("unconfirmed", m.unconfirmed),
        ):
            now, seen = int(getattr(settler, name)), self._seen.get(name, 0)
            if now > seen:
                counter.inc(now - seen)
            self._seen[name] = now

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-sample")

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:
                self._failed(exc)
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            self.sample()  # the settlement writer's last commits
        if self.dir is not None:
            # This worker's gauges leave the sums; its counters and histograms stay counted.
            with contextlib.suppress(Exception):
                mark_process_dead(os.getpid(), self.dir)

    # -- GET /metrics ------------------------------------------------------------------------------------

    async def serve_metrics(self, scope: Any, proto: Any, request_id: str) -> None:
        """The collected registry, to a bearer of `DRAGONFLY_METRICS_TOKEN` when one is set, else to
        loopback clients only (the client address as for key IP rules: trusted proxies apply)."""
        headers = scope.headers
        if self._token is not None:
            given = (bearer_token(headers) or "").encode()
            if not hmac.compare_digest(given, self._token.encode()):
                raise InvalidApiKey(
                    "A valid metrics token is required.", headers={"www-authenticate": "Bearer"}
                )
        elif not is_loopback(client_ip(scope, headers, self._trusted)):
            raise PermissionDenied(
                "Metrics are served to loopback clients only; set DRAGONFLY_METRICS_TOKEN to scrape "
                "from elsewhere."
            )
        self.sample()
        body = await asyncio.to_thread(generate_latest, self.output)
        proto.response_bytes(
            200, [("content-type", CONTENT_TYPE_PLAIN_0_0_4), ("x-request-id", request_id)], body
        )
