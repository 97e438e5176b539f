"""Journals and trades on both SQL backends: balanced, idempotent by reference, append-only."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from dragonfly.domain.ledger import (
    EXTERNAL_CREDIT,
    Posting,
    UnbalancedJournal,
    buyer_cash,
    credit_postings,
    trade_postings,
)
from dragonfly.domain.money import TradeCost, trade_cost
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.sql.repos.settlement import fast_settlement_steps, settle_batch, settlement_steps
from dragonfly.storage.sql.repos.trades import TradeRow


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


def _trade(tid: str, buyer: str, key: str, cost: TradeCost, created_at: int) -> TradeRow:
    return TradeRow(
        id=tid,
        buyer_account_id=buyer,
        key_id=key,
        model="m",
        upstream_model="m",
        listing_id="l1",
        seller_account_id="s1",
        provider="custom",
        streamed=0,
        status="completed",
        finish_reason="stop",
        error_code=None,
        latency_ms=5,
        ttft_ms=2,
        tokens_prompt=10,
        tokens_completion=20,
        tokens_cached=0,
        native_tokens_prompt=10,
        native_tokens_completion=20,
        counted_tokens_completion=20,
        usage_audit="ok",
        hold_micros=cost.charge + 5,
        cost_micros=cost.charge,
        seller_payout_micros=cost.payout + cost.reserve,
        platform_fee_micros=cost.fee + cost.rounding,
        attempts="[]",
        created_at=created_at,
        settled_at=created_at,
    )


# A paid trade with a platform fee and a seller reserve (the cost both settlement tests post).
PAID = trade_cost(
    prompt_tokens=10,
    completion_tokens=20,
    cached_tokens=0,
    input_price=3_000_000,
    output_price=7_000_000,
    cached_input_price=None,
    fee_bps=1000,
    reserve_bps=500,
)


async def test_settlement_batch_is_exact_idempotent_and_tracks_key_spend(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        cost = PAID
        nov, dec = 1_795_000_000_000, 1_797_000_000_000  # 2026-11 and 2026-12 (UTC)
        rows = [_trade(f"t{i}", f"b{i % 2}", f"k{i % 2}", cost, nov if i < 4 else dec) for i in range(5)]
        batch = [(t, trade_postings(t.buyer_account_id, "s1", cost)) for t in rows]
        free = _trade(
            "t-free",
            "b0",
            "k0",
            trade_cost(
                prompt_tokens=0,
                completion_tokens=0,
                cached_tokens=0,
                input_price=1,
                output_price=1,
                cached_input_price=None,
                fee_bps=0,
                reserve_bps=0,
            ),
            nov,
        )
        await db.write_batch(settlement_steps([*batch, (free, [])]))
        await db.write_batch(settlement_steps(batch))  # a replay of the same request ids: no effect
        assert await db.fetch_val("SELECT COUNT(*) FROM trades") == 6
        assert await db.fetch_val("SELECT COUNT(*) FROM journals") == 5
        assert await ledger.balance(db, buyer_cash("b0")) == -3 * cost.charge
        assert await ledger.balance(db, buyer_cash("b1")) == -2 * cost.charge
        sums = await db.fetch_all("SELECT account, SUM(amount) AS total FROM entries GROUP BY account")
        stored = {
            r["account"]: int(r["amount"]) for r in await db.fetch_all("SELECT account, amount FROM balances")
        }
        assert {r["account"]: int(r["total"]) for r in sums} == stored
        spend = {
            (r["key_id"], r["month"]): int(r["spent_micros"])
            for r in await db.fetch_all("SELECT key_id, month, spent_micros FROM key_spend")
        }
        assert spend == {
            ("k0", "2026-11"): 2 * cost.charge,
            ("k1", "2026-11"): 2 * cost.charge,
            ("k0", "2026-12"): cost.charge,
        }
    finally:
        await db.close()


async def _ledger_state(db) -> tuple[dict[str, int], dict[str, int], int, int]:
    sums = await db.fetch_all("SELECT account, SUM(amount) AS total FROM entries GROUP BY account")
    stored = await db.fetch_all("SELECT account, amount FROM balances")
    return (
        {r["account"]: int(r["total"]) for r in sums},
        {r["account"]: int(r["amount"]) for r in stored},
        await db.fetch_val("SELECT COUNT(*) FROM trades"),
        await db.fetch_val("SELECT COUNT(*) FROM journals"),
    )


async def test_fast_batch_sums_balances_and_a_replay_falls_back_per_trade(database_url: str) -> None:
    """The fast shape sums balance lines per batch; a replayed request id (from an earlier batch or twice
    in one) makes the batch fall back to the guarded shape: the fresh trades commit, nothing posts twice."""
    db = await open_database(database_url)
    try:
        cost = PAID
        at = 1_795_000_000_000
        rows = [_trade(f"f{i}", "b0", "k0", cost, at) for i in range(4)]
        first = [(t, trade_postings("b0", "s1", cost)) for t in rows[:3]]
        # Four trades of one buyer: one balance upsert per account, not four.
        assert len(fast_settlement_steps(first)[3][1]) == len({p.account for p in first[0][1] if p.amount})
        assert await settle_batch(db, first) == [None, None, None]
        after_first = await _ledger_state(db)
        assert after_first[0] == after_first[1]
        assert await ledger.balance(db, buyer_cash("b0")) == -3 * cost.charge

        fresh = (rows[3], trade_postings("b0", "s1", cost))
        mixed = [first[0], fresh, fresh]  # a replay from the last batch, and one id twice in this batch
        assert await settle_batch(db, mixed) == [None, None, None]
        entries, balances, n_trades, n_journals = await _ledger_state(db)
        assert entries == balances
        assert (n_trades, n_journals) == (4, 4)
        assert await ledger.balance(db, buyer_cash("b0")) == -4 * cost.charge
        spent = await db.fetch_val("SELECT spent_micros FROM key_spend WHERE key_id = 'k0'")
        assert int(spent) == 4 * cost.charge
    finally:
        await db.close()


async def test_fast_batch_of_trades_without_postings_commits_the_trades_alone(database_url: str) -> None:
    """A batch whose trades post nothing (refusals, free trades) leaves the journal, entry, balance and
    key-spend parts empty: on PostgreSQL the one-statement batch then passes empty arrays for them."""
    db = await open_database(database_url)
    try:
        rows = [_trade(f"z{i}", "b0", "k0", PAID, 1_795_000_000_000) for i in range(2)]
        assert await settle_batch(db, [(t, []) for t in rows]) == [None, None]
        assert await _ledger_state(db) == ({}, {}, 2, 0)
        assert await db.fetch_val("SELECT COUNT(*) FROM key_spend") == 0
        # Then a paying trade through the same statement: the arrays are full this time.
        paid = _trade("z9", "b0", "k0", PAID, 1_795_000_000_000)
        assert await settle_batch(db, [(paid, trade_postings("b0", "s1", PAID))]) == [None]
        entries, balances, n_trades, n_journals = await _ledger_state(db)
        assert entries == balances and (n_trades, n_journals) == (3, 1)
        assert await ledger.balance(db, buyer_cash("b0")) == -PAID.charge
    finally:
        await db.close()


async def test_fast_batch_stores_every_trade_column_as_given(database_url: str) -> None:
    """Every column of a trade reads back as written, through the batch each backend runs (on PostgreSQL
    the trade travels as a JSON array in column order): NULLs, text that needs escaping, integers past
    2^53, `streamed` given as a boolean or a number."""
    db = await open_database(database_url)
    try:
        base = _trade("c0", "b0", "k0", PAID, 1_795_000_000_000)
        full = dataclasses.replace(
            base,
            id="c1",
            model='ac/mé "quoted" \\ model',
            upstream_model="ünïcode-🙂",
            streamed=True,
            finish_reason="length",
            error_code="upstream_error",
            latency_ms=987_654,
            native_tokens_prompt=7,
            attempts='[{"listing_id":"l\\"1","status":"ok"}]',
            price_unit="characters",
            characters_prompt=2**53 + 1,
            counted_tokens_prompt=11,
            input_price=9_223_372_036_854_775_807,
            output_price=0,
            cached_input_price=1,
        )
        bare = dataclasses.replace(
            base,
            id="c2",
            upstream_model=None,
            listing_id=None,
            seller_account_id=None,
            provider=None,
            streamed=0,
            finish_reason=None,
            latency_ms=None,
            ttft_ms=None,
            native_tokens_prompt=None,
            native_tokens_completion=None,
            counted_tokens_completion=None,
        )
        numeric = dataclasses.replace(base, id="c3", streamed=1)
        batch = [(t, trade_postings(t.buyer_account_id, "s1", PAID)) for t in (full, bare, numeric)]
        assert await settle_batch(db, batch) == [None, None, None]
        for trade in (full, bare, numeric):
            row = await db.fetch_one("SELECT * FROM trades WHERE id = $1", trade.id)
            assert row is not None
            expected = dataclasses.asdict(trade) | {"streamed": int(trade.streamed)}
            assert {name: row[name] for name in expected} == expected
    finally:
        await db.close()


_DROP_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.mark.postgres
async def test_settlement_recovers_when_postgresql_drops_its_connections(pg_database_url: str) -> None:
    """The settlement batch runs on a connection of its own (storage/sql/postgres.py `write_batch`), not
    the pool's. When PostgreSQL drops it while idle (a restart, a failover, an idle timeout) the next batch
    goes on a new one, without failing, and nothing is half-written or written twice."""
    db = await open_database(pg_database_url)
    admin = await asyncpg.connect(pg_database_url)
    try:
        first = _trade("t1", "b1", "k1", PAID, 1)
        assert await settle_batch(db, [(first, trade_postings("b1", "s1", PAID))]) == [None]
        assert await admin.fetchval(_DROP_OTHERS) >= 1
        again = [(_trade("t2", "b1", "k1", PAID, 2), trade_postings("b1", "s1", PAID))]
        assert await settle_batch(db, again) == [None]
        assert await db.fetch_val("SELECT COUNT(*) FROM trades") == 2
        assert await ledger.balance(db, buyer_cash("b1")) == -2 * PAID.charge
    finally:
        await admin.close()
        await db.close()


@pytest.mark.postgres
async def test_pooled_connections_postgresql_dropped_while_idle_are_replaced(pg_database_url: str) -> None:
    """A restart, a failover or an idle timeout drops the pool's connections while they sit idle; asyncpg
    may hand each out once more before it notices (its next call fails before anything is sent). Reads,
    writes and transactions go on, on another connection, instead of failing once per dropped one."""
    db = await open_database(pg_database_url, pool_size=3)
    admin = await asyncpg.connect(pg_database_url)
    try:
        # Three connections in the pool, all idle.
        await asyncio.gather(*(db.fetch_val("SELECT 1 FROM pg_sleep(0.05)") for _ in range(3)))
        assert await admin.fetchval(_DROP_OTHERS) >= 3
        for _ in range(6):
            assert await db.fetch_val("SELECT 1") == 1
        assert await db.execute("UPDATE balances SET amount = amount WHERE account = 'nobody'") == 0
        assert await admin.fetchval(_DROP_OTHERS) >= 1
        async with db.transaction() as tx:
            await ledger.post_journal(tx, kind="credit", ref="c1", postings=credit_postings("b1", 500), now=1)
        assert await ledger.balance(db, buyer_cash("b1")) == 500
    finally:
        await admin.close()
        await db.close()
