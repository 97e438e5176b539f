"""The ledger checker on both SQL backends: a clean ledger written by the real settlement path passes; each
invariant broken by a deliberate corrupt write is reported (and what the database itself refuses is shown
refused). `dragonfly admin check-ledger` exits 0 / 1 accordingly."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import astuple, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.ledger_seed import Seeded, make_trade, seed_market, write_trades

from dragonfly.domain.calendar import month_of
from dragonfly.domain.ledger import EXTERNAL_CREDIT, Posting, buyer_cash, seller_locked
from dragonfly.ids import now_ms
from dragonfly.services.credits import credit_account_once
from dragonfly.services.ledger_check import Violation, check_ledger, counts
from dragonfly.storage.ports import Database, UniqueViolation
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger, trades
from dragonfly.storage.sql.sqlite import SqliteDatabase
from dragonfly.workers.settlement import release_due_earnings

HOUR_MS = 3_600_000


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    handle = await open_database(database_url)
    try:
        yield handle
    finally:
        await handle.close()


@pytest.fixture
async def seeded(db: Database) -> Seeded:
    now = now_ms()
    return await seed_market(db, times_ms=[now - 3 * HOUR_MS, now - 2 * HOUR_MS, now - 60_000])


def _checks(found: list[Violation]) -> set[str]:
    return {v.check for v in found}


async def _post_raw(
    db: Database, kind: str, lines: list[tuple[str, int]], *, update_balances: bool = True
) -> str:
    """A journal written with raw SQL, bypassing `post_journal`'s balance check."""
    jid, now = str(uuid.uuid4()), now_ms()
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, $2, $3, NULL, $4)",
            jid,
            kind,
            jid,
            now,
        )
        for account, amount in lines:
            await tx.execute(
                "INSERT INTO entries (journal_id, account, amount, created_at, public_id)"
                " VALUES ($1, $2, $3, $4, $5)",
                jid,
                account,
                amount,
                now,
                str(uuid.uuid4()),
            )
            if update_balances:
                await tx.execute(
                    "INSERT INTO balances (account, amount) VALUES ($1, $2)"
                    " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount",
                    account,
                    amount,
                )
    return jid


async def test_clean_ledger_passes(db: Database, seeded: Seeded) -> None:
    assert await check_ledger(db) == []
    seen = await counts(db)
    # credit journal + one journal per charged trade (the failed zero-cost trade has none)
    assert (seen.journals, seen.trades) == (4, 4)
    assert seen.entries == 2 + sum(len(t.postings) for t in seeded.trades)
    # Releasing earnings keeps it clean (release journals and settlement rows agree).
    assert await release_due_earnings(db, lock_s=3600)
    assert await check_ledger(db) == []


async def test_unbalanced_journal_is_reported(db: Database, seeded: Seeded) -> None:
    jid = await _post_raw(db, "corrupt", [(EXTERNAL_CREDIT, -5), (buyer_cash(seeded.buyer), 4)])
    found = await check_ledger(db)
    assert _checks(found) == {"journal_unbalanced"}, found
    assert found[0].subject == f"journal {jid}" and "sums to -1" in found[0].detail


async def test_balance_off_by_one_is_reported(db: Database, seeded: Seeded) -> None:
    await db.execute("UPDATE balances SET amount = amount + 1 WHERE account = $1", buyer_cash(seeded.buyer))
    found = await check_ledger(db)
    assert _checks(found) == {"balance_mismatch"}, found
    assert found[0].subject == buyer_cash(seeded.buyer)
    # Entries without a balance row are caught too.
    await _post_raw(db, "corrupt", [("x:one", 3), ("x:two", -3)], update_balances=False)
    subjects = {v.subject for v in await check_ledger(db)}
    assert {"x:one", "x:two", buyer_cash(seeded.buyer)} <= subjects


async def test_negative_buyer_cash_is_reported(db: Database, seeded: Seeded) -> None:
    cash = await ledger.balance(db, buyer_cash(seeded.buyer))
    async with db.transaction() as tx:  # a balanced journal that overdraws the buyer by one micro-dollar
        await ledger.post_journal(
            tx,
            kind="corrupt",
            ref="overdraw",
            postings=[Posting(buyer_cash(seeded.buyer), -(cash + 1)), Posting(EXTERNAL_CREDIT, cash + 1)],
            now=now_ms(),
        )
    found = await check_ledger(db)
    assert _checks(found) == {"negative_buyer_cash"}, found


async def test_negative_seller_earnings_are_reported(db: Database, seeded: Seeded) -> None:
    locked = await ledger.balance(db, seller_locked(seeded.seller))
    async with db.transaction() as tx:
        await ledger.post_journal(
            tx,
            kind="corrupt",
            ref="overpay",
            postings=[
                Posting(seller_locked(seeded.seller), -(locked + 1)),
                Posting("external:payouts", locked + 1),
            ],
            now=now_ms(),
        )
    assert _checks(await check_ledger(db)) == {"negative_seller_earnings"}


async def test_key_spend_above_current_budget_is_reported(db: Database, seeded: Seeded) -> None:
    spent = sum(t.row.cost_micros for t in seeded.trades)
    await db.execute(
        "UPDATE api_keys SET monthly_budget_cents = $1 WHERE id = $2", spent // 10_000, seeded.key_id
    )
    assert spent % 10_000, "the seeded spend must not be a whole number of cents"
    found = await check_ledger(db)
    assert _checks(found) <= {"key_budget_exceeded"} and found, found
    assert all(v.subject.startswith(f"key {seeded.key_id} ") for v in found)
    # Exactly at the budget is fine.
    await db.execute("UPDATE api_keys SET monthly_budget_cents = $1 WHERE id = $2", 500, seeded.key_id)
    assert await check_ledger(db) == []


async def test_trade_journal_mismatch_missing_and_orphan(db: Database, seeded: Seeded) -> None:
    # A trade whose journal does not match its cost split: the buyer pays less than the trade's cost.
    bad = make_trade(buyer=seeded.buyer, seller=seeded.seller, key_id=seeded.key_id, at_ms=now_ms())
    skewed = [
        Posting(p.account, p.amount + (1 if p.account == buyer_cash(seeded.buyer) else 0))
        for p in bad.postings
    ]
    skewed.append(Posting("platform:fees", -1))
    await write_trades(db, [replace(bad, postings=skewed)])
    found = await check_ledger(db)
    assert _checks(found) == {"trade_journal"}, found
    cost = bad.row.cost_micros
    assert found[0].subject == f"trade {bad.row.id}"
    assert f"buyer {-cost + 1} (want {-cost})" in found[0].detail, found[0].detail
    # A charged trade without any journal.
    lost = make_trade(buyer=seeded.buyer, seller=seeded.seller, key_id=seeded.key_id, at_ms=now_ms())
    async with db.transaction() as tx:
        assert await trades.insert(tx, lost.row)
    subjects = {v.subject for v in await check_ledger(db) if v.check == "trade_journal"}
    assert subjects == {f"trade {bad.row.id}", f"trade {lost.row.id}"}
    # A trade journal whose trade does not exist.
    async with db.transaction() as tx:
        await ledger.post_journal(tx, kind="trade", ref="no-such-trade", postings=bad.postings, now=now_ms())
    assert "trade_journal_orphan" in _checks(await check_ledger(db))


async def test_duplicate_request_id_is_refused_by_the_database(db: Database, seeded: Seeded) -> None:
    first = seeded.trades[0].row
    cols = ", ".join(first.__dataclass_fields__)
    marks = ", ".join(f"${i + 1}" for i in range(len(first.__dataclass_fields__)))
    with pytest.raises(UniqueViolation):
        await db.execute(f"INSERT INTO trades ({cols}) VALUES ({marks})", *astuple(first))
    assert await db.fetch_val("SELECT COUNT(*) FROM trades WHERE id = $1", first.id) == 1
    assert await check_ledger(db) == []


async def _drop_settle_le_hold(db: Database) -> None:
    """Bypass the `cost_micros <= hold_micros` CHECK so only the checker stands between us and a bad row."""
    if db.dialect == "sqlite":
        await db.execute("PRAGMA ignore_check_constraints = ON")
        # The pragma holds for the driver's own connection only: settle on it from here on, not on the
        # native batch writer's connection.
        assert isinstance(db, SqliteDatabase)
        writer, db._writer = db._writer, None
        if writer is not None:
            writer.close()
        return
    names = await db.fetch_all(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'trades'::regclass AND contype = 'c'"
    )
    for r in names:
        await db.execute(f'ALTER TABLE trades DROP CONSTRAINT "{r["conname"]}"')


async def test_settle_above_hold_refused_by_database_and_caught_by_checker(
    db: Database, seeded: Seeded
) -> None:
    over = make_trade(buyer=seeded.buyer, seller=seeded.seller, key_id=seeded.key_id, at_ms=now_ms())
    over = replace(over, row=replace(over.row, hold_micros=over.row.cost_micros - 1))
    with pytest.raises(Exception, match=r"(?i)check"):
        async with db.transaction() as tx:
            await trades.insert(tx, over.row)
    await _drop_settle_le_hold(db)
    await write_trades(db, [over])
    found = await check_ledger(db)
    assert _checks(found) == {"trade_amounts"}, found
    assert found[0].subject == f"trade {over.row.id}"
    # What the database accepts anyway: a charged trade with no hold, and a split that does not add up.
    no_hold = make_trade(buyer=seeded.buyer, seller=seeded.seller, key_id=seeded.key_id, at_ms=now_ms())
    await write_trades(db, [replace(no_hold, row=replace(no_hold.row, hold_micros=0))])
    subjects = {v.subject for v in await check_ledger(db) if v.check == "trade_amounts"}
    assert subjects == {f"trade {over.row.id}", f"trade {no_hold.row.id}"}


async def test_settlement_row_without_release_journal(db: Database, seeded: Seeded) -> None:
    await db.execute(
        "INSERT INTO seller_settlements (id, seller_account_id, amount_micros, trades_count, period_start,"
        " period_end, created_at, ref) VALUES ($1, $2, 5, 1, 0, 1, 1, $3)",
        str(uuid.uuid4()),
        seeded.seller,
        f"{seeded.seller}:1",
    )
    assert _checks(await check_ledger(db)) == {"release_settlement"}


async def test_state_store_hooks(db: Database, seeded: Seeded) -> None:
    cash = await ledger.balance(db, buyer_cash(seeded.buyer))
    agrees = SimpleNamespace(snapshot_balances=_const({seeded.buyer: cash}))
    assert await check_ledger(db, agrees) == []
    off = SimpleNamespace(snapshot_balances=_const({seeded.buyer: cash + 7}))
    assert _checks(await check_ledger(db, off)) == {"state_balance"}
    # account_view: lagging below the database is fail-closed (fine); above it is a violation.
    low = SimpleNamespace(account_view=_view(cash, pending=5))
    assert await check_ledger(db, low) == []
    high = SimpleNamespace(account_view=_view(cash + 1, pending=0))
    assert _checks(await check_ledger(db, high)) == {"state_balance"}
    spend = sum(t.row.cost_micros for t in seeded.trades)
    assert await check_ledger(db, SimpleNamespace(snapshot_key_spend=_const({seeded.key_id: spend}))) == []
    wrong = SimpleNamespace(snapshot_key_spend=_const({seeded.key_id: spend - 1}))
    assert _checks(await check_ledger(db, wrong)) == {"state_key_spend"}


def _const(value: dict[str, int]) -> Any:
    async def snapshot() -> dict[str, int]:
        return value

    return snapshot


def _view(balance: int, pending: int) -> Any:
    async def account_view(account_id: str) -> Any:
        return SimpleNamespace(balance_micros=balance, pending_micros=pending, held_micros=0)

    return account_view


def _cli(database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DRAGONFLY_DATABASE_URL": database_url,
        "DRAGONFLY_DATA_DIR": str(data_dir),
        "DRAGONFLY_SECRET_KEY": "checker-test",
    }
    return subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", "admin", "check-ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_exit_codes(db: Database, seeded: Seeded, database_url: str, tmp_path: Path) -> None:
    ok = _cli(database_url, tmp_path)
    assert ok.returncode == 0, ok.stderr
    entries = 2 + sum(len(t.postings) for t in seeded.trades)
    assert ok.stdout.strip() == f"ledger ok: 4 journals, {entries} entries, 4 trades checked"
    await db.execute(
        "UPDATE balances SET amount = amount - 1 WHERE account = $1", seller_locked(seeded.seller)
    )
    bad = _cli(database_url, tmp_path)
    assert bad.returncode == 1
    assert f"balance_mismatch: {seller_locked(seeded.seller)}: stored" in bad.stdout
    assert "1 violation" in bad.stderr


@pytest.mark.redis
async def test_redis_state_store_agrees_or_is_reported(
    db: Database, seeded: Seeded, fresh_redis_url: str
) -> None:
    from dragonfly.storage.state.ports import AccountSeed, seed_now
    from dragonfly.storage.state.redis import RedisStateStore

    cash = await ledger.balance(db, buyer_cash(seeded.buyer))
    store = RedisStateStore(fresh_redis_url)
    try:
        assert await check_ledger(db, store) == []  # nothing seeded yet: nothing to compare
        await seed_now(store, AccountSeed(seeded.buyer, cash, month_of(now_ms())))
        assert await check_ledger(db, store) == []
        await seed_now(store, AccountSeed(seeded.buyer, cash + 1, month_of(now_ms())))
        found = await check_ledger(db, store)
        assert _checks(found) == {"state_balance"} and found[0].subject == buyer_cash(seeded.buyer)
    finally:
        await store.close()


async def test_keyed_credits_agree_with_their_journals_or_are_reported(db: Database, seeded: Seeded) -> None:
    operator = seeded.seller  # any account may stand for the operator in the row's foreign key
    made, _ = await credit_account_once(
        db,
        account_id=seeded.buyer,
        amount_micros=2_500_000,
        note="invoice",
        operator_id=operator,
        idempotency_key="inv-1",
    )
    assert await check_ledger(db) == []
    # A row naming a credit that was never posted, and one whose amount is not what its journal credited.
    for key, credit_id, amount in (("ghost", str(uuid.uuid4()), 100), ("wrong", made["id"], 2_400_000)):
        await db.execute(
            "INSERT INTO credit_requests (operator_id, idempotency_key, credit_id, account_id, amount_micros,"
            " note, balance_micros, created_at) VALUES ($1, $2, $3, $4, $5, 'x', 0, 0)",
            operator,
            key,
            credit_id,
            seeded.buyer,
            amount,
        )
    found = await check_ledger(db)
    assert _checks(found) == {"credit_request"}, found
    details = sorted(v.detail for v in found)
    assert any("of 100 " in d and "0 journal(s)" in d for d in details), details
    assert any("of 2400000 " in d and "crediting 2500000" in d for d in details), details
