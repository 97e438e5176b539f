"""Journals and trades on both SQL backends: balanced, idempotent by reference, append-only."""

from __future__ import annotations

import pytest

from dragonfly.domain.ledger import (
    EXTERNAL_CREDIT,
    Posting,
    UnbalancedJournal,
    buyer_cash,
    credit_postings,
    trade_postings,
)
from dragonfly.domain.money import trade_cost
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger


async def test_posting_is_idempotent_and_balances_match_entries(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        async with db.transaction() as tx:
            assert await ledger.post_journal(
                tx, kind="credit", ref="c1", postings=credit_postings("b1", 5000), now=1
            )
        async with db.transaction() as tx:
            # Same (kind, ref): the replay changes nothing.
            assert not await ledger.post_journal(
                tx, kind="credit", ref="c1", postings=credit_postings("b1", 5000), now=2
            )
        cost = trade_cost(
            prompt_tokens=100,
            completion_tokens=50,
            cached_tokens=0,
            input_price=1_000_000,
            output_price=2_000_000,
            cached_input_price=None,
            fee_bps=1000,
            reserve_bps=500,
        )
        async with db.transaction() as tx:
            await ledger.post_journal(
                tx, kind="trade", ref="t1", postings=trade_postings("b1", "s1", cost), now=3
            )
        assert await ledger.balance(db, buyer_cash("b1")) == 5000 - cost.charge
        assert await ledger.balance(db, EXTERNAL_CREDIT) == -5000
        sums = await db.fetch_all("SELECT account, SUM(amount) AS total FROM entries GROUP BY account")
        stored = {
            r["account"]: r["amount"] for r in await db.fetch_all("SELECT account, amount FROM balances")
        }
        assert {r["account"]: int(r["total"]) for r in sums} == {k: int(v) for k, v in stored.items()}
        assert sum(int(v) for v in stored.values()) == 0
        per_journal = await db.fetch_all(
            "SELECT journal_id, SUM(amount) AS total FROM entries GROUP BY journal_id"
        )
        assert all(int(r["total"]) == 0 for r in per_journal) and len(per_journal) == 2
    finally:
        await db.close()


async def test_unbalanced_journal_writes_nothing(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        with pytest.raises(UnbalancedJournal):
            async with db.transaction() as tx:
                await ledger.post_journal(tx, kind="x", ref="1", postings=[Posting("a", 1)], now=1)
        assert await db.fetch_val("SELECT COUNT(*) FROM journals") == 0
    finally:
        await db.close()


async def test_entries_are_append_only(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        async with db.transaction() as tx:
            await ledger.post_journal(tx, kind="credit", ref="c1", postings=credit_postings("b1", 10), now=1)
        with pytest.raises(Exception, match="append-only"):
            await db.execute("UPDATE entries SET amount = amount + 1")
        with pytest.raises(Exception, match="append-only"):
            await db.execute("DELETE FROM entries")
        assert await db.fetch_val("SELECT COUNT(*) FROM entries") == 2
    finally:
        await db.close()


async def test_batch_posting_matches_single_posting_and_skips_replays(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        cost = trade_cost(
            prompt_tokens=10,
            completion_tokens=20,
            cached_tokens=0,
            input_price=3_000_000,
            output_price=7_000_000,
            cached_input_price=None,
            fee_bps=1000,
            reserve_bps=500,
        )
        batch = [("trade", f"t{i}", trade_postings(f"b{i % 2}", "s1", cost), 10 + i) for i in range(5)]
        async with db.transaction() as tx:
            assert await ledger.post_journals_batch(tx, batch) == 5
        async with db.transaction() as tx:
            assert await ledger.post_journals_batch(tx, batch) == 0  # replay of the same refs
        assert await ledger.balance(db, buyer_cash("b0")) == -3 * cost.charge
        assert await ledger.balance(db, buyer_cash("b1")) == -2 * cost.charge
        sums = await db.fetch_all("SELECT account, SUM(amount) AS total FROM entries GROUP BY account")
        stored = {
            r["account"]: int(r["amount"]) for r in await db.fetch_all("SELECT account, amount FROM balances")
        }
        assert {r["account"]: int(r["total"]) for r in sums} == stored
        assert await db.fetch_val("SELECT COUNT(*) FROM journals") == 5
    finally:
        await db.close()
