"""The embedded durable point: trades settle into the settlement log, reach SQLite in the background,
are committed exactly once after a crash, and readers that flush see every one of them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.ledger_seed import FUNDS_MICROS, Trade, funded_market, make_trade, write_trades

from dragonfly.domain.calendar import month_of
from dragonfly.domain.ledger import Posting, buyer_cash
from dragonfly.gateway import settlement
from dragonfly.gateway.settlement import LOG_BATCH, SettlementWriter
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.ports import Database, DatabaseUnavailable
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql import sqlite as sqlite_driver
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.sql.settlement_log import SettlementLog, encode, log_path_for, refused_path_for
from dragonfly.storage.state.memory import MemoryStateStore
from dragonfly.storage.state.ports import AccountSeed, AdmissionRequest, seed_now
from dragonfly.storage.state.seeding import reseed_all

NOW = 1_780_000_000_000


def _read(path: str) -> bytes:
    with open(path, "rb") as f:  # a few hundred bytes: no need to leave the loop
        return f.read()


def _log_bytes(db_path: str) -> bytes:
    return _read(log_path_for(db_path))


@dataclass
class Market:
    path: str  # the SQLite file; its settlement log is beside it
    db: Database
    buyer: str
    seller: str
    key_id: str

    def trade(self, at_ms: int, **kw: int) -> Trade:
        return make_trade(buyer=self.buyer, seller=self.seller, key_id=self.key_id, at_ms=at_ms, **kw)

    def log(self) -> SettlementLog:
        return SettlementLog(log_path_for(self.path))


@dataclass
class Books(Market):
    writer: SettlementWriter


@pytest.fixture
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    """A SQLite database with a funded buyer; no writer yet."""
    path = str(tmp_path / "df.db")
    db = await open_database(f"sqlite:///{path}")
    try:
        yield Market(path, db, *await funded_market(db))
    finally:
        await db.close()


@pytest.fixture
async def books(market: Market) -> AsyncIterator[Books]:
    """The market, and a started writer whose durable point is the log."""
    writer = SettlementWriter(market.db, market.log())
    try:
        await writer.start()
        yield Books(market.path, market.db, market.buyer, market.seller, market.key_id, writer)
    finally:
        await writer.close()


async def _committed(db: Database, ids: list[str]) -> int:
    rows = await db.fetch_all("SELECT id FROM trades")
    return len({r["id"] for r in rows} & set(ids))


async def test_settle_is_durable_in_the_log_and_flush_commits_it(market: Market) -> None:
    db, writer = market.db, SettlementWriter(market.db, market.log())
    try:
        await writer.start()
        assert writer.durable_point == "settlement_log"
        trades = [market.trade(NOW + i) for i in range(5)]
        for t in trades:
            await writer.settle(t.row, t.postings)
        # Durable before any commit: one line per trade is already in the file.
        assert _log_bytes(market.path).count(b"\n") == 5
        assert await writer.flush()
        assert await _committed(db, [t.row.id for t in trades]) == 5
        charged = sum(t.cost.charge for t in trades)
        assert await ledger.balance(db, buyer_cash(market.buyer)) == FUNDS_MICROS - charged
        assert await check_ledger(db) == []
    finally:
        await writer.close()
    assert _log_bytes(market.path) == b""  # everything committed: nothing left to replay


async def test_trades_left_in_the_log_are_committed_once_at_start(market: Market) -> None:
    db = market.db
    trades = [market.trade(NOW + i) for i in range(3)]
    # A previous process logged three trades, committed the first, and was killed.
    dead = market.log()
    dead.open()
    for t in trades:
        dead.append(t.row, t.postings)
    dead.close()
    await write_trades(db, trades[:1])

    writer = SettlementWriter(db, market.log())
    await writer.start()
    try:
        assert await _committed(db, [t.row.id for t in trades]) == 3
        charged = sum(t.cost.charge for t in trades)
        assert await ledger.balance(db, buyer_cash(market.buyer)) == FUNDS_MICROS - charged  # the first, once
        assert await check_ledger(db) == []
        assert _log_bytes(market.path) == b""
    finally:
        await writer.close()


async def test_reseed_sees_trades_the_store_counted_before_they_reached_the_database(books: Books) -> None:
    store = MemoryStateStore()
    try:
        await seed_now(store, AccountSeed(books.buyer, FUNDS_MICROS, month_of(NOW), {books.key_id: 0}))
        t = books.trade(NOW)
        adm = await store.admit(
            AdmissionRequest(
                request_id=t.row.id,
                account_id=books.buyer,
                key_id=books.key_id,
                listing_id="listing-a",
                hold_micros=t.row.hold_micros,
                key_budget_micros=None,
                listing_rpm_cap=None,
                listing_concurrency_cap=None,
                now_ms=NOW,
            )
        )
        assert adm.ok
        # What the data plane does: log the trade, then count the charge in the store.
        await books.writer.settle(t.row, t.postings)
        await store.settle(t.row.id, t.cost.charge)
        # The re-seed reads the store's marks, then (after the flush) the database, then SETs.
        await reseed_all(store, books.db, {books.buyer: [books.key_id]}, NOW, before_read=books.writer.flush)
        view = await store.account_view(books.buyer)
        assert view is not None and view.available_micros == FUNDS_MICROS - t.cost.charge
    finally:
        await store.close()


async def test_a_burst_larger_than_a_batch_commits_in_the_background(books: Books) -> None:
    writer = books.writer
    trades = [books.trade(NOW + i, prompt=10, completion=5) for i in range(LOG_BATCH + 44)]
    for t in trades:
        await writer.settle(t.row, t.postings)
    assert writer.uncommitted == len(trades)
    # No flush: the writer gets there by itself, a batch at a time.
    for _ in range(1000):
        if not writer.uncommitted:
            break
        await asyncio.sleep(0.01)
    assert writer.uncommitted == 0 and writer.batches >= 2
    assert await _committed(books.db, [t.row.id for t in trades]) == len(trades)
    charged = sum(t.cost.charge for t in trades)
    assert await ledger.balance(books.db, buyer_cash(books.buyer)) == FUNDS_MICROS - charged


async def test_a_locked_database_delays_commits_and_loses_none(
    books: Books, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the write lock for longer than the driver waits for it.
    monkeypatch.setattr(sqlite_driver, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(settlement, "MAX_UNCOMMITTED", 3)
    db, writer = books.db, books.writer
    trades = [books.trade(NOW + i) for i in range(4)]
    blocker = sqlite3.connect(books.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        for t in trades[:3]:
            await writer.settle(t.row, t.postings)
        assert not await writer.flush(timeout_s=0.5)  # a reader gives up waiting and reads what is there
        assert writer.uncommitted == 3 and writer.refused == 0
        # Past MAX_UNCOMMITTED the next trade is refused before it is logged: it costs nothing.
        with pytest.raises(DatabaseUnavailable):
            await writer.settle(trades[3].row, trades[3].postings)
        assert _log_bytes(books.path).count(b"\n") == 3
        blocker.execute("COMMIT")
        assert await writer.flush(timeout_s=10)
        assert writer.uncommitted == 0 and writer.refused == 0
        assert await _committed(db, [t.row.id for t in trades]) == 3
        charged = sum(t.cost.charge for t in trades[:3])
        assert await ledger.balance(db, buyer_cash(books.buyer)) == FUNDS_MICROS - charged
    finally:
        blocker.close()


async def test_a_trade_the_database_refuses_is_set_aside_and_the_rest_commit(market: Market) -> None:
    db = market.db
    good = [market.trade(NOW + i) for i in range(2)]
    poison = market.trade(NOW + 5)
    unbalanced = [Posting(buyer_cash(market.buyer), -5)]  # a journal that does not sum to zero
    writer = SettlementWriter(db, market.log())
    await writer.start()
    await writer.settle(good[0].row, good[0].postings)
    await writer.settle(poison.row, unbalanced)
    await writer.settle(good[1].row, good[1].postings)
    assert await writer.flush()
    assert writer.refused == 1 and writer.uncommitted == 0
    await writer.close()
    assert await _committed(db, [t.row.id for t in good]) == 2
    assert await _committed(db, [poison.row.id]) == 0
    # The refused record sits, unchanged, in the refused file; the log itself is empty again.
    assert _read(refused_path_for(log_path_for(market.path))) == encode(poison.row, unbalanced)
    assert _log_bytes(market.path) == b""
    charged = sum(t.cost.charge for t in good)
    assert await ledger.balance(db, buyer_cash(market.buyer)) == FUNDS_MICROS - charged
    assert await check_ledger(db) == []
