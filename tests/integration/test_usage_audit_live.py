"""The market-relative usage audit, live (workers/usage_audit.py) on both SQL backends: three sellers of one
model whose tokenizer Dragonfly only estimates (so their reports stand as billed), settled through the
real settlement writer. One of them is honest for its first trades, then reports 10 % more completion
tokens than it produced. The worker raises an alarm on that seller alone, flags the block of trades that
crossed the threshold (trade reviews, seller share held from the release worker), the books stay
balanced, and resolving the review releases the hold. One control plane at a time runs it (the lease)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from support.ledger_seed import Trade, funded_market, make_trade, new_account, write_trades

from dragonfly.config import Settings
from dragonfly.domain.money import usd
from dragonfly.domain.usage_audit import UsageAudit
from dragonfly.ids import now_ms
from dragonfly.services import earnings, flagged_trades, trade_reviews
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.workers.settlement import release_due_earnings
from dragonfly.workers.usage_audit import RECENT_S, AuditFollower

LOCK_S = 3600
MODEL = "test/llama-like"
# Small blocks so the test needs few trades; the threshold and drift allowance are the product's.
DETECTOR = UsageAudit(block_trades=5, min_peer_blocks=2)
HONEST_ROUNDS = 60  # 12 blocks per seller: the inflator turns at a block boundary
BAD_ROUNDS = 40
INFLATION = 1.10


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    handle = await open_database(database_url)
    try:
        yield handle
    finally:
        await handle.close()


def _micros(amount_usd: str) -> int:
    return int(Decimal(amount_usd) * 1_000_000)


def _trade(rng: random.Random, *, buyer: str, seller: str, key_id: str, at_ms: int, inflate: float) -> Trade:
    """A trade of a seller whose tokenizer counts 12 % more than the local estimate (noisy per answer)."""
    counted_prompt, counted_completion = rng.randint(100, 400), rng.randint(50, 300)
    prompt = round(counted_prompt * 1.12 * rng.lognormvariate(0, 0.03))
    completion = round(counted_completion * 1.12 * rng.lognormvariate(0, 0.03) * inflate)
    t = make_trade(
        buyer=buyer,
        seller=seller,
        key_id=key_id,
        at_ms=at_ms,
        prompt=prompt,
        completion=completion,
        model=MODEL,
    )
    row = dataclasses.replace(
        t.row, counted_tokens_prompt=counted_prompt, counted_tokens_completion=counted_completion
    )
    return Trade(row, t.cost, t.postings)


async def test_a_seller_inflating_after_admission_is_flagged_and_held(db: Database) -> None:
    rng = random.Random(7)
    buyer, bad, key_id = await funded_market(db)
    honest = [await new_account(db, "honest-a"), await new_account(db, "honest-b")]
    follower = AuditFollower(db, lock_s=LOCK_S, owner="cp-1", detector=DETECTOR)
    assert await follower.step() == [] and follower.leading  # took the lease; nothing to rebuild

    start = now_ms() - 30 * 60_000
    raised, bad_trades = [], set()
    for r in range(HONEST_ROUNDS + BAD_ROUNDS):
        turned = r >= HONEST_ROUNDS
        batch = [
            _trade(rng, buyer=buyer, seller=s, key_id=key_id, at_ms=start + r * 1000, inflate=1.0)
            for s in honest
        ]
        t = _trade(
            rng,
            buyer=buyer,
            seller=bad,
            key_id=key_id,
            at_ms=start + r * 1000,
            inflate=INFLATION if turned else 1.0,
        )
        batch.append(t)
        if turned:
            bad_trades.add(t.row.id)
        await write_trades(db, batch)
        if r % 10 == 9:
            found = await follower.step()
            if not turned:
                assert found == [], "an alarm while every seller was honest"
            raised += found

    assert raised, "the inflating seller was never flagged"
    assert {a.seller for a, _ in raised} == {bad} and {a.kind for a, _ in raised} == {"completion"}
    first, flagged_count = raised[0]
    # Found within a few blocks of turning: 8 blocks after at most.
    assert first.trades <= (HONEST_ROUNDS + 8 * DETECTOR.block_trades)
    assert first.ratio > first.reference * 1.05
    assert flagged_count == DETECTOR.block_trades

    listed = await flagged_trades.list_reviews(db, bad, limit=100, cursor=None)
    reviews = listed["data"]
    assert len(reviews) == sum(n for _, n in raised)
    assert {rv["trade_id"] for rv in reviews} <= bad_trades  # only trades after it turned
    for rv in reviews:
        assert rv["flagged_by"] == "market" and rv["review"]["state"] == "open"
        assert rv["market_audit"]["kind"] == "completion"
        assert rv["market_audit"]["reported_to_counted"] > rv["market_audit"]["market_reported_to_counted"]
    for s in honest:
        assert (await flagged_trades.list_reviews(db, s, limit=10, cursor=None))["data"] == []
    held = sum(_micros(rv["seller_payout_usd"]) for rv in reviews)
    assert (await earnings.overview(db, bad))["held_usd"] == usd(held)
    assert [str(v) for v in await check_ledger(db)] == []

    # The release worker leaves what the reviews hold; dismissing one releases its share.
    await release_due_earnings(db, lock_s=LOCK_S, now=now_ms() + 2 * LOCK_S * 1000)
    assert (await earnings.overview(db, bad))["held_usd"] == usd(held)
    one = reviews[0]
    await trade_reviews.resolve(
        db,
        Settings(earnings_lock_s=LOCK_S),
        trade_id=one["trade_id"],
        action="dismiss",
        note="tokenizer",
        actor_id="op",
    )
    after = (await earnings.overview(db, bad))["held_usd"]
    assert after == usd(held - _micros(one["seller_payout_usd"]))
    assert [str(v) for v in await check_ledger(db)] == []


async def test_one_control_plane_runs_it_and_another_takes_over(db: Database) -> None:
    rng = random.Random(11)
    buyer, seller, key_id = await funded_market(db)
    a = AuditFollower(db, lock_s=LOCK_S, owner="cp-a", detector=DETECTOR)
    b = AuditFollower(db, lock_s=LOCK_S, owner="cp-b", detector=DETECTOR)
    assert await a.step() == [] and a.leading
    assert await b.step() == [] and not b.leading  # A holds the lease

    now, r = now_ms(), int(RECENT_S * 1000)
    trades = [
        _trade(rng, buyer=buyer, seller=seller, key_id=key_id, at_ms=now - k * r, inflate=1.0)
        for k in (6, 4, 2)
    ]
    await write_trades(db, trades)
    await a.step()
    assert {t.row.id for t in trades} <= set(a.seen)
    # Nothing new, nothing late: the pass reads again only the last RECENT_S before the newest trade fed
    # (that trade); the older lookback it counts instead of reading.
    await a.step()
    assert a.read == 1
    # A trade that reaches the database late (it ended before the newest one fed) is still fed: the count
    # of the older lookback differs, so all of it is read again (and the three fed before are skipped).
    late = _trade(rng, buyer=buyer, seller=seller, key_id=key_id, at_ms=now - 12 * r, inflate=1.0)
    await write_trades(db, [late])
    await a.step()
    assert late.row.id in a.seen
    assert a.read == 4
    newer = _trade(rng, buyer=buyer, seller=seller, key_id=key_id, at_ms=now - r // 5, inflate=1.0)
    await write_trades(db, [newer])
    await a.step()
    assert newer.row.id in a.seen
    assert a.read == 2  # the newest fed before, again, and the new one

    await a.stop()  # gives the lease up (a control plane stopping)
    assert await b.step() == [] and b.leading  # took over: rebuilt from the database
    assert {t.row.id for t in [*trades, late, newer]} <= set(b.seen)
    assert await a.step() == [] and not a.leading
