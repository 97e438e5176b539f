"""The earnings release worker on both SQL backends: moves exactly the matured locked earnings once,
records one settlement per release, picks up late-committed trades, and two concurrent runs (two
connection pools, as two control planes) never release twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.ledger_seed import make_trade, seed_market, write_trades

from dragonfly.domain.ledger import seller_available, seller_locked, seller_reserve
from dragonfly.domain.payouts import RELEASE_KIND
from dragonfly.ids import now_ms
from dragonfly.services import earnings
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.workers.settlement import release_due_earnings

LOCK_S = 3600
HOUR_MS = 3_600_000


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    handle = await open_database(database_url)
    try:
        yield handle
    finally:
        await handle.close()


async def _balances(db: Database, seller: str) -> tuple[int, int, int]:
    return (
        await ledger.balance(db, seller_locked(seller)),
        await ledger.balance(db, seller_available(seller)),
        await ledger.balance(db, seller_reserve(seller)),
    )


async def test_release_moves_exactly_the_due_amount_once(db: Database) -> None:
    now = now_ms()
    s = await seed_market(db, times_ms=[now - 3 * HOUR_MS, now - 2 * HOUR_MS, now - 60_000])
    old, recent = s.trades[:2], s.trades[2:3]
    due = sum(t.cost.payout for t in old)
    locked_before, _, reserve_before = await _balances(db, s.seller)

    first = await release_due_earnings(db, lock_s=LOCK_S, now=now)
    assert [(r.seller_account_id, r.amount_micros, r.trades_count) for r in first] == [(s.seller, due, 2)]
    assert first[0].period_start == old[0].row.created_at and first[0].period_end == now - LOCK_S * 1000
    assert await _balances(db, s.seller) == (locked_before - due, due, reserve_before)

    # Second run at the same instant, and one a little later: nothing more is due.
    assert await release_due_earnings(db, lock_s=LOCK_S, now=now) == []
    assert await release_due_earnings(db, lock_s=LOCK_S, now=now + 1000) == []
    assert await _balances(db, s.seller) == (locked_before - due, due, reserve_before)
    rows = await db.fetch_all("SELECT * FROM seller_settlements")
    assert [(r["amount_micros"], r["trades_count"]) for r in rows] == [(due, 2)]
    assert await db.fetch_val("SELECT COUNT(*) FROM journals WHERE kind = $1", RELEASE_KIND) == 1

    # Once the recent trade leaves its window, only it is released; the reserve never moves.
    later = now + LOCK_S * 1000
    second = await release_due_earnings(db, lock_s=LOCK_S, now=later)
    assert [(r.amount_micros, r.trades_count, r.period_start) for r in second] == [
        (recent[0].cost.payout, 1, first[0].period_end)
    ]
    assert await _balances(db, s.seller) == (0, due + recent[0].cost.payout, reserve_before)
    assert await check_ledger(db) == []


async def test_late_committed_trade_is_released_next_run(db: Database) -> None:
    now = now_ms()
    s = await seed_market(db, times_ms=[now - 3 * HOUR_MS])
    await release_due_earnings(db, lock_s=LOCK_S, now=now)
    # A trade stamped before the last cutoff commits only now (a slow group commit on another instance).
    late = make_trade(buyer=s.buyer, seller=s.seller, key_id=s.key_id, at_ms=now - 2 * HOUR_MS)
    await write_trades(db, [late])
    again = await release_due_earnings(db, lock_s=LOCK_S, now=now + 1)
    assert [(r.amount_micros, r.trades_count) for r in again] == [(late.cost.payout, 1)]
    assert await ledger.balance(db, seller_locked(s.seller)) == 0
    assert await check_ledger(db) == []


async def test_nothing_due_inside_the_lock_window(db: Database) -> None:
    now = now_ms()
    s = await seed_market(db, times_ms=[now - 10_000, now - 5_000])
    assert await release_due_earnings(db, lock_s=LOCK_S, now=now) == []
    assert (await _balances(db, s.seller))[1] == 0
    assert await db.fetch_val("SELECT COUNT(*) FROM seller_settlements") == 0


async def test_concurrent_runs_on_two_pools_release_once(db: Database, database_url: str) -> None:
    now = now_ms()
    sellers = []
    for _ in range(3):
        s = await seed_market(db, times_ms=[now - 3 * HOUR_MS - i * 1000 for i in range(4)])
        sellers.append(s)
    due = {s.seller: sum(t.cost.payout for t in s.trades) for s in sellers}
    other = await open_database(database_url, migrate=False)
    try:
        for round_ in range(3):  # several rounds with distinct clocks: distinct refs, so only the lock helps
            await asyncio.gather(
                release_due_earnings(db, lock_s=LOCK_S, now=now + round_),
                release_due_earnings(other, lock_s=LOCK_S, now=now + round_ + 7),
            )
    finally:
        await other.close()
    for s in sellers:
        assert await ledger.balance(db, seller_available(s.seller)) == due[s.seller]
        assert await ledger.balance(db, seller_locked(s.seller)) == 0
        total = await db.fetch_val(
            "SELECT SUM(amount_micros) FROM seller_settlements WHERE seller_account_id = $1", s.seller
        )
        assert int(total) == due[s.seller]
    assert await check_ledger(db) == []


async def test_settlement_history_pages_newest_first(db: Database) -> None:
    now = now_ms()
    s = await seed_market(db, times_ms=[now - 5 * HOUR_MS, now - 3 * HOUR_MS, now - HOUR_MS // 2])
    for at in (now - 2 * HOUR_MS, now, now + HOUR_MS):  # three releases, one trade each
        assert len(await release_due_earnings(db, lock_s=LOCK_S, now=at)) == 1
    first = await earnings.settlements(db, s.seller, limit=2, cursor=None)
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = await earnings.settlements(db, s.seller, limit=2, cursor=int(first["next_cursor"]))
    assert rest["has_more"] is False and rest["next_cursor"] is None and len(rest["data"]) == 1
    ends = [r["period_end"] for r in first["data"] + rest["data"]]
    assert ends == sorted(ends, reverse=True) and len(set(ends)) == 3
    assert [r["trades_count"] for r in first["data"] + rest["data"]] == [1, 1, 1]
