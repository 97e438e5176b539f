"""Everything a data-plane worker owns, built at startup and passed down (nothing at import time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from dragonfly.config import Settings
from dragonfly.gateway.routing import Router
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.gateway.snapshot import Snapshot, load_snapshot
from dragonfly.gateway.upstream import UpstreamClient
from dragonfly.ids import now_ms
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import snapshot as snapshot_rows
from dragonfly.storage.state.memory import MemoryStateStore, month_of
from dragonfly.storage.state.ports import StateStore

log = logging.getLogger("dragonfly.gateway")

# Balances are also re-seeded on this period, since credits and top-ups may not bump the change seq.
RESEED_EVERY_S = 2.0


def _month_start_ms(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hasher = KeyHasher(settings.secret_key)
        self.box = SecretBox(settings.secret_key)
        self.router = Router()
        self.upstream = UpstreamClient(settings)
        self.state: StateStore = MemoryStateStore()
        self._db: Database | None = None
        self._settler: SettlementWriter | None = None
        self._snapshot: Snapshot | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Counts settlements applied to the state store; a re-seed that raced one is discarded.
        self.settle_epoch = 0

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
        self._settler = SettlementWriter(self._db)
        self._settler.start()
        await self.upstream.start()
        await self.refresh(force=True)
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll(), name="snapshot-poll"))

    async def refresh(self, force: bool = False) -> None:
        seq = await changes.current(self.db)
        if force or self._snapshot is None or seq != self._snapshot.seq:
            snap = await load_snapshot(self.db, self.box, seq, now_ms())
            self.router.load(snap)
            self._snapshot = snap
        await self._reseed()

    async def _reseed(self) -> None:
        """SET the state store's balances and key spend from the database (never add to them)."""
        snap = self.snapshot
        epoch = self.settle_epoch
        now = now_ms()
        accounts = sorted({k.account_id for k in snap.keys_by_hash.values()})
        balances = await snapshot_rows.account_balances(self.db, accounts)
        spend = await snapshot_rows.key_month_spend(self.db, _month_start_ms(now))
        if epoch != self.settle_epoch:
            return  # a settlement landed while we read: our numbers may predate it; try next round
        for account_id in accounts:
            await self.state.seed_account(account_id, balances.get(account_id, 0))
        month = month_of(now)
        for key in snap.keys_by_hash.values():
            await self.state.seed_key_spend(key.id, month, spend.get(key.id, 0))

    async def _poll(self) -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(self.settings.snapshot_poll_s)
            waited += self.settings.snapshot_poll_s
            try:
                seq = await changes.current(self.db)
                if seq != self.snapshot.seq or waited >= RESEED_EVERY_S:
                    waited = 0.0
                    await self.refresh()
            except Exception as exc:  # keep serving from the last good snapshot
                log.warning("snapshot refresh failed: %s", type(exc).__name__)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._settler is not None:
            await self._settler.close()
        await self.upstream.close()
        await self.state.close()
        if self._db is not None:
            await self._db.close()
