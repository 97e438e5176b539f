"""Trade reviews, reserve releases and payouts on both SQL backends, through the real services and workers:
an open review holds its seller's share from the release worker; dismissing releases it at once;
upholding refunds the buyer exactly the excess with a balanced journal and releases the rest; the reserve
waits out its period and pauses after an upheld review; payouts move available -> pending -> external and
never overspend, even asked for concurrently on two connection pools (two control planes). The ledger
checker passes after every step, and catches what a broken writer would leave."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from support.ledger_seed import (
    INPUT_PRICE,
    OUTPUT_PRICE,
    Seeded,
    Trade,
    funded_market,
    make_trade,
    write_trades,
)

from dragonfly.config import Settings
from dragonfly.domain.ledger import (
    EXTERNAL_PAYOUTS,
    PLATFORM_FEES,
    buyer_cash,
    seller_available,
    seller_locked,
    seller_payouts_pending,
    seller_reserve,
)
from dragonfly.domain.money import usd
from dragonfly.domain.payouts import DAY_MS
from dragonfly.errors import Conflict, InvalidRequest, NotFound
from dragonfly.ids import new_id, now_ms
from dragonfly.services import earnings, flagged_trades, payouts, trade_reviews
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.workers.settlement import release_due_earnings, release_due_reserves

LOCK_S = 3600
HOUR_MS = 3_600_000
SETTINGS = Settings(earnings_lock_s=LOCK_S)
# A flagged trade: billed 1000 prompt / 500 completion tokens, counted 400 / 200. At $1 / $2 per 1M tokens
# (1 and 2 µUSD a token) the excess is 600 x 1 + 300 x 2.
EXCESS = 600 * 1 + 300 * 2


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    handle = await open_database(database_url)
    try:
        yield handle
    finally:
        await handle.close()


def _flagged(t: Trade, counted_prompt: int = 400, counted_completion: int = 200) -> Trade:
    row = dataclasses.replace(
        t.row,
        usage_audit="flagged",
        native_tokens_prompt=3 * t.row.tokens_prompt,
        native_tokens_completion=3 * t.row.tokens_completion,
        counted_tokens_prompt=counted_prompt,
        counted_tokens_completion=counted_completion,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
    )
    return Trade(row, t.cost, t.postings)


async def _market(db: Database, specs: list[tuple[int, bool]]) -> Seeded:
    """A funded buyer and a seller with one trade per (age in ms, flagged)."""
    buyer, seller, key_id = await funded_market(db)
    out = Seeded(buyer=buyer, seller=seller, key_id=key_id)
    now = now_ms()
    for age, flagged in specs:
        t = make_trade(buyer=buyer, seller=seller, key_id=key_id, at_ms=now - age)
        out.trades.append(_flagged(t) if flagged else t)
    await write_trades(db, out.trades)
    return out


async def _bal(db: Database, account: str) -> int:
    return await ledger.balance(db, account)


async def _clean(db: Database) -> None:
    assert [str(v) for v in await check_ledger(db)] == []


async def test_an_open_review_holds_its_share_until_dismissed(db: Database) -> None:
    s = await _market(db, [(3 * HOUR_MS, False), (2 * HOUR_MS, True)])
    honest, flagged = s.trades
    released = await release_due_earnings(db, lock_s=LOCK_S)
    assert [r.amount_micros for r in released] == [honest.cost.payout]
    # Later passes still leave the flagged trade's payout where it is.
    assert await release_due_earnings(db, lock_s=LOCK_S, now=now_ms() + 10 * HOUR_MS) == []
    assert await _bal(db, seller_available(s.seller)) == honest.cost.payout
    view = await earnings.overview(db, s.seller)
    assert view["held_usd"] == usd(flagged.cost.payout + flagged.cost.reserve)
    assert view["locked_usd"] == usd(0) and view["reserve_usd"] == usd(honest.cost.reserve)
    await _clean(db)

    listed = await flagged_trades.list_reviews(db, s.seller, limit=10, cursor=None)
    (review,) = listed["data"]
    assert review["trade_id"] == flagged.row.id
    assert review["review"] == {
        "state": "open",
        "held_usd": usd(flagged.row.seller_payout_micros),
        "excess_usd": usd(EXCESS),
        "refund_usd": usd(0),
        "note": None,
        "resolved_at": None,
    }

    out = await trade_reviews.resolve(
        db, SETTINGS, trade_id=flagged.row.id, action="dismiss", note="tokenizer", actor_id="ops"
    )
    assert out["review"]["state"] == "dismissed" and out["review"]["refund_usd"] == usd(0)
    assert out["review"]["held_usd"] == usd(0) and out["review"]["resolved_by"] == "ops"
    assert out["review"]["note"] == "tokenizer" and out["review"]["excess_usd"] == usd(EXCESS)
    # Released at once, without waiting for the worker: the trade is past its lock window.
    assert await _bal(db, seller_available(s.seller)) == honest.cost.payout + flagged.cost.payout
    assert await _bal(db, seller_locked(s.seller)) == 0
    assert (await earnings.overview(db, s.seller))["held_usd"] == usd(0)
    await _clean(db)

    with pytest.raises(Conflict, match="already dismissed"):
        await trade_reviews.resolve(
            db, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="o"
        )
    with pytest.raises(NotFound):
        await trade_reviews.resolve(
            db, SETTINGS, trade_id=honest.row.id, action="dismiss", note=None, actor_id="o"
        )
    with pytest.raises(NotFound):
        await trade_reviews.resolve(
            db, SETTINGS, trade_id=new_id(), action="dismiss", note=None, actor_id="o"
        )
    assert (await flagged_trades.list_reviews(db, s.seller, limit=10, cursor=None, state="open"))[
        "data"
    ] == []
    done = await flagged_trades.list_flagged(db, limit=10, cursor=None, state="dismissed")
    assert [t["id"] for t in done["data"]] == [flagged.row.id]


async def test_uphold_refunds_the_excess_in_a_balanced_journal(db: Database) -> None:
    s = await _market(db, [(2 * HOUR_MS, True)])
    (flagged,) = s.trades
    cost = flagged.cost
    buyer_before = await _bal(db, buyer_cash(s.buyer))
    fees_before = await _bal(db, PLATFORM_FEES)

    out = await trade_reviews.resolve(
        db, SETTINGS, trade_id=flagged.row.id, action="uphold", note="3x report", actor_id="ops"
    )
    assert out["review"]["state"] == "upheld" and out["review"]["refund_usd"] == usd(EXCESS)
    assert await _bal(db, buyer_cash(s.buyer)) == buyer_before + EXCESS
    p = cost.payout * EXCESS // cost.charge
    r = cost.reserve * EXCESS // cost.charge
    f = cost.fee * EXCESS // cost.charge
    assert await _bal(db, PLATFORM_FEES) == fees_before - f
    # The rest of the payout was released at once; the reserve keeps the rest of its share.
    assert await _bal(db, seller_available(s.seller)) == cost.payout - p
    assert await _bal(db, seller_locked(s.seller)) == 0
    assert await _bal(db, seller_reserve(s.seller)) == cost.reserve - r
    lines = await db.fetch_all(
        "SELECT e.account, e.amount FROM entries e JOIN journals j ON j.id = e.journal_id"
        " WHERE j.kind = 'review_refund' AND j.ref = $1",
        flagged.row.id,
    )
    assert sum(int(x["amount"]) for x in lines) == 0
    assert {str(x["account"]): int(x["amount"]) for x in lines}[buyer_cash(s.buyer)] == EXCESS
    view = await earnings.overview(db, s.seller)
    assert view["lifetime_usd"] == usd(cost.payout + cost.reserve - p - r)
    await _clean(db)

    ops_view = await flagged_trades.list_flagged(db, limit=10, cursor=None, state="upheld")
    assert [t["review"]["refund_usd"] for t in ops_view["data"]] == [usd(EXCESS)]
    with pytest.raises(Conflict):
        await trade_reviews.resolve(
            db, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="o"
        )
    assert await _bal(db, buyer_cash(s.buyer)) == buyer_before + EXCESS  # refunded once


async def test_a_review_still_in_its_lock_window_is_upheld_from_what_it_holds(db: Database) -> None:
    s = await _market(db, [(60_000, True)])
    (flagged,) = s.trades
    await trade_reviews.resolve(
        db, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="o"
    )
    p = flagged.cost.payout * EXCESS // flagged.cost.charge
    assert await _bal(db, seller_locked(s.seller)) == flagged.cost.payout - p
    assert await _bal(db, seller_available(s.seller)) == 0  # not matured yet
    later = await release_due_earnings(db, lock_s=LOCK_S, now=now_ms() + 2 * HOUR_MS)
    assert [x.amount_micros for x in later] == [flagged.cost.payout - p]
    await _clean(db)


async def test_concurrent_resolutions_on_two_pools_resolve_once(db: Database, database_url: str) -> None:
    s = await _market(db, [(2 * HOUR_MS, True)])
    (flagged,) = s.trades
    other = await open_database(database_url, migrate=False)
    try:
        results = await asyncio.gather(
            trade_reviews.resolve(
                db, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="a"
            ),
            trade_reviews.resolve(
                other, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="b"
            ),
            return_exceptions=True,
        )
    finally:
        await other.close()
    assert sorted(type(x).__name__ for x in results) == ["Conflict", "dict"]
    assert await db.fetch_val("SELECT COUNT(*) FROM journals WHERE kind = 'review_refund'") == 1
    await _clean(db)


async def test_the_reserve_waits_its_period_and_pauses_after_an_upheld_review(db: Database) -> None:
    s = await _market(db, [(40 * DAY_MS, False), (35 * DAY_MS, True), (2 * DAY_MS, False)])
    old, flagged, recent = s.trades
    # 30 days: the old trade's reserve goes; the flagged one's is held, the recent one's is inside the period.
    assert await release_due_reserves(db, days=30) == {s.seller: old.cost.reserve}
    assert await release_due_reserves(db, days=30) == {}  # cumulative: nothing twice
    await _clean(db)
    await trade_reviews.resolve(
        db, SETTINGS, trade_id=flagged.row.id, action="uphold", note=None, actor_id="o"
    )
    r = flagged.cost.reserve * EXCESS // flagged.cost.charge
    # Upheld now: no reserve moves for 30 days, even the flagged trade's remaining share.
    assert await release_due_reserves(db, days=30) == {}
    assert await release_due_reserves(db, days=30, now=now_ms() + 29 * DAY_MS) == {}
    # A full period after the upheld review, what matured since is released.
    later = now_ms() + 31 * DAY_MS
    assert await release_due_reserves(db, days=30, now=later) == {
        s.seller: flagged.cost.reserve - r + recent.cost.reserve
    }
    assert await _bal(db, seller_reserve(s.seller)) == 0
    await _clean(db)


async def test_payouts_move_available_to_pending_to_external(db: Database) -> None:
    s = await _market(db, [(2 * HOUR_MS, False), (3 * HOUR_MS, False)])
    await release_due_earnings(db, lock_s=LOCK_S)
    available = await _bal(db, seller_available(s.seller))
    assert available == sum(t.cost.payout for t in s.trades)

    with pytest.raises(InvalidRequest, match="above your available earnings") as refused:
        await payouts.request_payout(db, s.seller, amount_micros=available + 1)
    assert refused.value.param == "amount_usd"
    first = await payouts.request_payout(db, s.seller, amount_micros=available - 100)
    assert first["status"] == "pending" and first["amount_usd"] == usd(available - 100)
    assert await _bal(db, seller_available(s.seller)) == 100
    assert await _bal(db, seller_payouts_pending(s.seller)) == available - 100
    with pytest.raises(InvalidRequest):
        await payouts.request_payout(db, s.seller, amount_micros=101)
    second = await payouts.request_payout(db, s.seller, amount_micros=100)
    await _clean(db)

    external = await _bal(db, EXTERNAL_PAYOUTS)
    paid = await payouts.mark_paid(db, first["id"], actor_id="ops", note="wire 42")
    assert paid["status"] == "paid" and paid["paid_by"] == "ops" and paid["note"] == "wire 42"
    assert await _bal(db, seller_payouts_pending(s.seller)) == 100
    assert await _bal(db, EXTERNAL_PAYOUTS) == external + available - 100
    with pytest.raises(Conflict, match="already marked paid"):
        await payouts.mark_paid(db, first["id"], actor_id="ops", note=None)
    with pytest.raises(NotFound):
        await payouts.mark_paid(db, new_id(), actor_id="ops", note=None)
    view = await earnings.overview(db, s.seller)
    assert (view["available_usd"], view["payout_pending_usd"], view["paid_out_usd"]) == (
        usd(0),
        usd(100),
        usd(available - 100),
    )
    assert view["lifetime_usd"] == usd(sum(t.row.seller_payout_micros for t in s.trades))
    listed = await payouts.list_payouts(db, s.seller, limit=1, cursor=None)
    assert [p["id"] for p in listed["data"]] == [second["id"]] and listed["has_more"] is True
    rest = await payouts.list_payouts(db, s.seller, limit=1, cursor=listed["next_cursor"])
    assert [p["id"] for p in rest["data"]] == [first["id"]] and rest["has_more"] is False
    queue = await payouts.list_all(db, limit=10, cursor=None, status="pending")
    assert [(p["id"], p["seller_id"]) for p in queue["data"]] == [(second["id"], s.seller)]
    await _clean(db)


async def test_concurrent_payouts_on_two_pools_never_overspend(db: Database, database_url: str) -> None:
    s = await _market(db, [(2 * HOUR_MS, False)])
    await release_due_earnings(db, lock_s=LOCK_S)
    available = await _bal(db, seller_available(s.seller))
    share = available * 6 // 10
    other = await open_database(database_url, migrate=False)
    try:
        for _ in range(2):
            results = await asyncio.gather(
                payouts.request_payout(db, s.seller, amount_micros=share),
                payouts.request_payout(other, s.seller, amount_micros=share),
                return_exceptions=True,
            )
            if any(isinstance(x, dict) for x in results):
                assert sorted(type(x).__name__ for x in results) == ["InvalidRequest", "dict"]
    finally:
        await other.close()
    assert await _bal(db, seller_available(s.seller)) == available - share
    assert await _bal(db, seller_payouts_pending(s.seller)) == share
    await _clean(db)


async def test_the_checker_catches_a_resolution_or_payout_without_its_journal(db: Database) -> None:
    s = await _market(db, [(2 * HOUR_MS, True)])
    (flagged,) = s.trades
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO trade_reviews (trade_id, seller_account_id, buyer_account_id, state, excess_micros,"
            " refund_micros, note, resolved_by, resolved_at)"
            " VALUES ($1, $2, $3, 'upheld', 5, 5, NULL, 'x', $4)",
            flagged.row.id,
            s.seller,
            s.buyer,
            now_ms(),
        )
        await tx.execute(
            "INSERT INTO payouts (id, seller_account_id, amount_micros, status, created_at)"
            " VALUES ($1, $2, 7, 'paid', $3)",
            new_id(),
            s.seller,
            now_ms(),
        )
    found = {v.check for v in await check_ledger(db)}
    assert found == {"trade_review", "payout_journal"}
