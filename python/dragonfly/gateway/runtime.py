"""Everything a data-plane worker owns, built at startup and passed down (nothing at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from dragonfly.config import Settings
from dragonfly.gateway.activity import RoutingActivity
from dragonfly.gateway.auth import KeyResolver
from dragonfly.gateway.changes import ChangeListener
from dragonfly.gateway.health import HealthTracker
from dragonfly.gateway.http import BodyDeadlines
from dragonfly.gateway.proxy import ControlPlaneClient
from dragonfly.gateway.routing import Router
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.gateway.snapshot import Snapshot, load_snapshot
from dragonfly.gateway.telemetry import Telemetry
from dragonfly.gateway.upstream import UpstreamClient
from dragonfly.ids import now_ms
from dragonfly.native.tokens import EncodingName, encoding_for_model, load_encoding
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.health import policy_from
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.settlement_log import SettlementLog, log_path_for_url
from dragonfly.storage.state import seeding
from dragonfly.storage.state.factory import make_state_store
from dragonfly.storage.state.ports import AccountSeed, StateStore, StateUnavailable

log = logging.getLogger("dragonfly.gateway")

# Balances are also re-seeded on this period, since credits and top-ups may not bump the change seq.
RESEED_EVERY_S = 2.0


def _load_all(names: list[EncodingName]) -> None:
    for name in names:
        load_encoding(name)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hasher = KeyHasher(settings.secret_key)
        self.box = SecretBox(settings.secret_key)
        self.router = Router()
        # The router explains (its market's explanation, with the pricing exclusions it made named).
        self.activity = RoutingActivity(self.router, lambda: self._db)
        # Live outcomes degrade and suspend listings (domain/health.py), written in the background.
        self.health = HealthTracker(
            policy_from(settings), lambda: self._snapshot, lambda: self._db, self.reload_snapshot
        )
        self.upstream = UpstreamClient(settings)
        # The request-body deadline (gateway/http.py `read_body`), one sweep task per worker.
        self.body_deadlines = BodyDeadlines(settings.http_body_timeout_s)
        self.control = ControlPlaneClient()
        # In-process, or Redis when configured; accounts it does not know yet are seeded on first touch.
        self.state: StateStore = make_state_store(settings)
        self.state.set_loader(self._load_account)
        self._db: Database | None = None
        self._settler: SettlementWriter | None = None
        self._snapshot: Snapshot | None = None
        self._encodings: set[EncodingName] = set()  # loaded or being loaded
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        # Buyer keys: the snapshot, then a rate-limited database read-through for keys created since.
        self.keys = KeyResolver(self.hasher, lambda: self.snapshot, lambda: self.db, self.reload_snapshot)
        # PostgreSQL announces every change-sequence bump; polling stays as the fallback.
        self.change_feed = ChangeListener(settings.database_url)
        # Prometheus metrics and the per-request log line (gateway/telemetry.py).
        self.telemetry = Telemetry(
            settings, lambda: self._snapshot, lambda: self.state, lambda: self._settler
        )

    @property
    def db(self) -> Database:
        assert self._db is not None
        return self._db

    @property
    def snapshot(self) -> Snapshot:
        assert self._snapshot is not None
        return self._snapshot

    @property
    def settler(self) -> SettlementWriter:
        assert self._settler is not None
        return self._settler

    async def start(self) -> None:
        if not self.settings.embedded and self.settings.workers > 1 and not self.settings.redis_url:
            raise RuntimeError("more than one data-plane worker needs a shared state store (Redis)")
        self._db = await open_database(self.settings.database_url)
        self._settler = SettlementWriter(self._db, self._settlement_log())
        await self._settler.start()
        await self.upstream.start()
        await self.refresh(force=True)
        await self.change_feed.start()
        self.activity.start()
        self.health.start()
        self.telemetry.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll(), name="snapshot-poll"))
        self._tasks.append(
            asyncio.get_running_loop().create_task(self.body_deadlines.run(), name="body-deadlines")
        )

    def _settlement_log(self) -> SettlementLog | None:
        """The embedded default makes a local log its durable point (gateway/settlement.py): one worker
        owns the in-process state store and the database file, so nothing else settles behind its back.
        With Redis, other instances count settlements the re-seed must find in the database."""
        if self.settings.redis_url:
            return None
        path = log_path_for_url(self.settings.database_url)
        return None if path is None else SettlementLog(path)

    async def refresh(self, force: bool = False) -> None:
        await self.reload_snapshot(force)
        await self._reseed()

    async def reload_snapshot(self, force: bool = False) -> None:
        """Load the snapshot when the change sequence moved. Callers that arrive while a load runs wait
        for it and then check the sequence again (one load serves them all)."""
        async with self._reload_lock:
            seq = await changes.current(self.db)
            if force or self._snapshot is None or seq != self._snapshot.seq:
                snap = await load_snapshot(
                    self.db, self.box, seq, now_ms(), fee_bps=self.settings.platform_fee_bps
                )
                self.router.load(snap)
                self._snapshot = snap
                self._load_encodings(snap)

    def _load_encodings(self, snap: Snapshot) -> None:
        """Load, off the event loop, every encoding the market's requests will be counted with: each
        listing's own, and the one its public model name maps to (what a request is pre-parsed with)."""
        wanted: set[EncodingName] = set()
        for model, listings in snap.listings_by_model.items():
            wanted.add(encoding_for_model(model)[0])
            wanted.update(listing.count_encoding for listing in listings)
        missing = sorted(wanted - self._encodings)
        if missing:
            self._encodings.update(missing)
            threading.Thread(target=_load_all, args=(missing,), name="load-encodings", daemon=True).start()

    async def _reseed(self) -> None:
        """SET the state store's balances and key spend from the database (never add to them).

        Several instances settle into one store while this runs, so a database read can miss a settlement
        that the store already counted. The store numbers every settlement it counts; we read those
        numbers (marks) BEFORE the database, and the store drops only entries numbered at or below the
        mark: a settlement is committed to the database before the store counts it, so those are in what
        we read. Anything later stays counted until the next round: a race can only over-count (fail
        closed), never let spend exceed a balance or budget (details in `storage.state.ports`)."""
        keys_by_account: dict[str, list[str]] = {}
        for key in self.snapshot.keys_by_hash.values():
            keys_by_account.setdefault(key.account_id, []).append(key.id)
        try:
            await seeding.reseed_all(
                self.state, self.db, keys_by_account, now_ms(), before_read=self.settler.flush
            )
        except StateUnavailable:
            self.telemetry.state_store_error("reseed")
            log.warning("state store unreachable: re-seed skipped, admission fails closed until it returns")

    async def _load_account(self, account_id: str) -> AccountSeed:
        """First touch of an account the store does not know (new, or Redis lost its data)."""
        keys = [k.id for k in self.snapshot.keys_by_hash.values() if k.account_id == account_id]
        await self.settler.flush()
        return await seeding.load_account(self.db, account_id, keys, now_ms())

    async def _poll(self) -> None:
        waited = 0.0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # Woken early by a change notification (PostgreSQL), else after the poll interval.
            await self.change_feed.wait(self.settings.snapshot_poll_s)
            waited += loop.time() - started
            try:
                seq = await changes.current(self.db)
                if seq != self.snapshot.seq:
                    await self.reload_snapshot()
                if waited >= RESEED_EVERY_S:
                    waited = 0.0
                    await self._reseed()
            except Exception as exc:  # keep serving from the last good snapshot
                self.telemetry.database_error("snapshot_poll")
                log.warning("snapshot refresh failed: %s", type(exc).__name__)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.change_feed.stop()
        if self._settler is not None:
            await self._settler.close()
        await self.telemetry.close()
        await self.activity.close()
        await self.health.close()
        await self.upstream.close()
        await self.control.close()
        await self.state.close()
        if self._db is not None:
            await self._db.close()
