"""The data plane's health tracker: every attempt's outcome, from the two places in gateway/chat.py that
already report it to the native market (`_fail_attempt`, `_record_health`), feeds one listing's streaks
and success-rate window (domain/health.py); a transition the machine decides is written to the database
by a background task (services/health.py), never on the request's path.

Each instance judges its own traffic only. Any instance may degrade, suspend or (on live successes)
restore a contract; the state lives in the database, every write is a compare-and-set on the status the
instance saw, and the change-sequence bump makes every instance reload it. The instance that wrote
reloads at once, so its next verdict starts from the new status.

The hot path pays a few dict look-ups and, on a failure, the sum of the model's other listings' windows.
Nothing here raises into the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from dragonfly.domain import health
from dragonfly.domain.health import HealthPolicy, Outcome, Transition
from dragonfly.gateway.snapshot import ListingInfo, Snapshot
from dragonfly.ids import now_ms
from dragonfly.logsampling import worth_logging
from dragonfly.services import health as service
from dragonfly.storage.ports import Database

log = logging.getLogger("dragonfly.gateway.health")

# After a write that changed nothing (another instance moved the contract first) the listing's verdicts
# rest this long; after a suspension the ejection share held back, the base ejection time.
STALE_QUIET_MS = 2_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class HealthTracker:
    def __init__(
        self,
        policy: HealthPolicy,
        snapshot: Callable[[], Snapshot | None],
        database: Callable[[], Database | None],
        reload: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], int] = _monotonic_ms,
    ) -> None:
        self.policy = policy
        self._snapshot = snapshot
        self._database = database
        self._reload = reload
        self._clock = clock
        self.live = health.LiveHealth(policy)  # streaks and windows per listing, and their verdicts
        self._pending: dict[str, tuple[str, Transition]] = {}  # listing -> (status seen, transition)
        self._quiet_until: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.errors = 0

    # -- the hot path ----------------------------------------------------------------------------------

    def failed(self, listing: ListingInfo, error_type: str) -> None:
        """A failed attempt (`gateway/chat.py` `_fail_attempt`), by its receipt's `error_type`."""
        self._observe(listing, health.classify(error_type), error_type)

    def finished(self, listing: ListingInfo, ok: bool, finish_reason: str | None) -> None:
        """An answered attempt (`gateway/chat.py` `_record_health`)."""
        self._observe(listing, health.stream_outcome(ok, finish_reason), "broken_answer")

    def _observe(self, listing: ListingInfo, outcome: Outcome, detail: str) -> None:
        if outcome == "neutral":
            return
        try:
            snap = self._snapshot()
            current = snap.listings_by_id.get(listing.id) if snap is not None else None
            status = (current or listing).contract_status
            now = self._clock()
            if not self.live.observe(listing.id, status, outcome, now, detail):
                return
            if listing.id in self._pending or self._quiet_until.get(listing.id, 0) > now:
                return
            peers = snap.listings_by_model.get(listing.model, ()) if snap is not None else ()
            verdict = self.live.verdict(listing.id, status, now, (other.id for other in peers))
            if verdict is not None:
                self._pending[listing.id] = (status, verdict)
                self._wake.set()
        except Exception as exc:
            self.errors += 1
            if worth_logging(self.errors):
                log.warning("listing health not tracked: %s", type(exc).__name__)

    # -- the writer ------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="listing-health")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every pending transition now."""
        async with self._lock:
            db = self._database()
            while db is not None and self._pending:
                listing_id, (seen, transition) = next(iter(self._pending.items()))
                try:
                    result = await service.apply_live(
                        db,
                        self.policy,
                        listing_id=listing_id,
                        expected=seen,
                        transition=transition,
                        instance=self.instance,
                        now=now_ms(),
                    )
                    if result == "applied":
                        log.info("listing %s: %s -> %s", listing_id, seen, transition.to)
                        await self._reload()
                    else:
                        quiet = STALE_QUIET_MS if result == "stale" else self.policy.base_ejection_ms
                        self._quiet_until[listing_id] = self._clock() + quiet
                except Exception as exc:
                    self.errors += 1
                    self._quiet_until[listing_id] = self._clock() + STALE_QUIET_MS
                    if worth_logging(self.errors):
                        log.warning("listing health transition not written: %s", type(exc).__name__)
                finally:
                    self._pending.pop(listing_id, None)
            self._forget_gone()

    def _forget_gone(self) -> None:
        snap = self._snapshot()
        if snap is None or len(self.live.streaks) <= 2 * len(snap.listings_by_id) + 100:
            return
        for gone in [k for k in self.live.streaks if k not in snap.listings_by_id]:
            self.live.forget(gone)
            self._quiet_until.pop(gone, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            async with self._lock:  # never cancel a write halfway through
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
