"""Routing activity: a sample of the data plane's routing decisions, explained and written to the database
for the operator (`GET /api/admin/routing/activity` on the control plane reads every instance's rows).

The hot path pays one dict lookup per decision. `record` keeps at most one decision per (model, profile)
per `interval_s` (always the first one after start), and only for those calls the native
`Market.explain` with the request's own model, profile, time and seed, so the explanation reproduces the
ranking the request was given (live statistics aside: by the time a trade's outcome is known, its own
result is in them). A background task compacts the explanations, writes them in small batches and keeps
the table to the newest `keep` rows. Nothing here raises into the caller: a full queue drops the oldest
sample, a failed write drops its batch, and both are counted and logged sparingly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from dragonfly.ids import new_id
from dragonfly.logsampling import worth_logging
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import activity as repo

log = logging.getLogger("dragonfly.gateway.activity")

# Stored per decision: every ranked listing up to this many, then excluded ones up to the same bound.
MAX_CANDIDATES = 32
_DIGITS = 6


class Explainer(Protocol):
    """What explains a ranking: the data plane's router (gateway/routing.py, which names the listings it
    held back for their price), or a bare native `Market`."""

    def explain(self, model: str, profile_id: str, now_ms: int, seed: int) -> Any: ...


def _round(values: Any) -> dict[str, float]:
    return {k: round(float(v), _DIGITS) for k, v in dict(values).items()}


def compact(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`Market.explain` rows -> what is stored: the profile's weights once (they are the same on every
    row), the number of listings the model had, and the rows, ranked first in rank order, bounded."""
    ranked = sorted((r for r in rows if r.get("rank") is not None), key=lambda r: int(r["rank"]))
    excluded = [r for r in rows if r.get("rank") is None]
    kept = (ranked + excluded)[:MAX_CANDIDATES]
    return {
        "weights": _round(rows[0]["weights"]) if rows else {},
        "listings": len(rows),
        "rows": [
            {
                "listing_id": r["listing_id"],
                "rank": r["rank"],
                "excluded": r["excluded"],
                "score": round(float(r["score"]), _DIGITS),
                "features": _round(r["features"]),
                "penalties": list(r["penalties"]),
            }
            for r in kept
        ],
    }


def _stored(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A queued decision as its database row: the explanation compacted into JSON text."""
    explained = row[-1]
    if isinstance(explained, str):  # explain failed: name the error, keep the decision
        explanation: dict[str, Any] = {"weights": {}, "listings": 0, "rows": [], "error": explained}
    else:
        explanation = compact(explained)
    return (*row[:-1], orjson.dumps(explanation).decode())


def _after(previous: str) -> str:
    """The next id after `previous` (UUIDv7 ids made within one millisecond are not ordered)."""
    h = f"{int(previous.replace('-', ''), 16) + 1:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class ActivityStats:
    sampled: int = 0
    skipped: int = 0  # not sampled: another decision for the same (model, profile) within the interval
    dropped: int = 0  # sampled, but the queue was full (the database is slow or unreachable)
    written: int = 0
    failed: int = 0  # sampled rows lost to a failed write or explain


class RoutingActivity:
    def __init__(
        self,
        market: Explainer,
        database: Callable[[], Database | None],
        *,
        interval_s: float = 1.0,
        batch: int = 100,
        queue: int = 1_000,
        keep: int = 10_000,
        linger_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._market = market
        self._database = database
        self._interval = interval_s
        self._batch = batch
        self._keep = keep
        self._linger = linger_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._pending: deque[tuple[Any, ...]] = deque(maxlen=queue)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._since_prune = keep  # prune on the first write
        self._last_id = ""
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.stats = ActivityStats()

    # -- the hot path ----------------------------------------------------------------------------------

    def record(
        self,
        *,
        model: str,
        profile_id: str,
        strategy: str,
        now_ms: int,
        seed: int,
        chosen_listing_id: str | None,
        outcome: str,
        error_code: str | None,
        trade_id: str | None = None,
    ) -> None:
        """Note one routing decision and its outcome (`completed`, `failed`, `refused`, ...). Returns at
        once; never raises."""
        try:
            key = (model, profile_id)
            t = self._clock()
            last = self._last.get(key)
            if last is not None and t - last < self._interval:
                self.stats.skipped += 1
                return
            self._last[key] = t
            if len(self._last) > 100_000:
                self._forget(t)
            try:
                explained: list[dict[str, Any]] | str = self._market.explain(model, profile_id, now_ms, seed)
            except Exception as exc:  # e.g. the profile left the market with a snapshot reload
                explained = type(exc).__name__
            if len(self._pending) == self._pending.maxlen:
                self.stats.dropped += 1
            row_id = new_id()
            # Newest first must hold within a millisecond too (ids are the order and the prune key).
            self._last_id = row_id if row_id > self._last_id else _after(self._last_id)
            # Compacting and serialising the explanation is left to the writer, off the request's path.
            self._pending.append(
                (
                    self._last_id,
                    now_ms,
                    self.instance,
                    model,
                    profile_id,
                    strategy,
                    seed,
                    trade_id,
                    chosen_listing_id,
                    outcome[:32],
                    error_code,
                    explained,
                )
            )
            self.stats.sampled += 1
            self._wake.set()
        except Exception as exc:
            self.stats.failed += 1
            if worth_logging(self.stats.failed):
                log.warning("routing activity not recorded: %s", type(exc).__name__)

    def _forget(self, now: float) -> None:
        self._last = {k: v for k, v in self._last.items() if now - v < self._interval}

    # -- the writer ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="routing-activity")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self._linger)  # gather what arrives meanwhile into the next batch

    async def flush(self) -> None:
        """Write every sampled decision now (in batches)."""
        async with self._lock:
            db = self._database()
            while db is not None and self._pending:
                taken = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
                await self._write(db, taken)

    async def _write(self, db: Database, taken: list[tuple[Any, ...]]) -> None:
        try:
            rows = [_stored(row) for row in taken]
            async with db.transaction() as tx:
                await repo.insert_many(tx, rows)
                self._since_prune += len(rows)
                if self._since_prune >= max(1, self._keep // 10):
                    await repo.prune(tx, keep=self._keep)
                    self._since_prune = 0
            self.stats.written += len(rows)
        except Exception as exc:
            self.stats.failed += len(taken)
            if worth_logging(self.stats.failed):
                log.warning("routing activity: %d decisions not written: %s", len(taken), type(exc).__name__)

    async def close(self) -> None:
        """Stop the writer and write what is still queued."""
        task, self._task = self._task, None
        if task is not None:
            async with self._lock:  # never cancel a batch halfway through its write
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
