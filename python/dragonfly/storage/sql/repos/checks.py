"""Read-only queries of the ledger checker. Each returns only offending rows (at most `limit`), so a
clean ledger of millions of trades costs a few scans and returns nothing."""

from __future__ import annotations

from dragonfly.storage.ports import Dialect, Executor, Row

_ENTRY_SUMS = "SELECT account, SUM(amount) AS total FROM entries GROUP BY account"


async def counts(db: Executor) -> Row:
    row = await db.fetch_one(
        "SELECT (SELECT COUNT(*) FROM journals) AS journals, (SELECT COUNT(*) FROM entries) AS entries,"
        " (SELECT COUNT(*) FROM trades) AS trades"
    )
    assert row is not None
    return row


async def unbalanced_journals(db: Executor, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT j.id, j.kind, j.ref, SUM(e.amount) AS total"
        " FROM journals j JOIN entries e ON e.journal_id = j.id GROUP BY j.id, j.kind, j.ref"
        " HAVING SUM(e.amount) <> 0 ORDER BY j.id LIMIT $1",
        limit,
    )


async def balance_mismatches(db: Executor, limit: int) -> list[Row]:
    """Stored balance vs the sum of the account's entries, both ways (a balance row without entries,
    entries without a balance row)."""
    return await db.fetch_all(
        "SELECT account, stored, summed FROM ("
        f" SELECT b.account, b.amount AS stored, COALESCE(s.total, 0) AS summed FROM balances b"
        f" LEFT JOIN ({_ENTRY_SUMS}) s ON s.account = b.account WHERE b.amount <> COALESCE(s.total, 0)"
        " UNION ALL"
        f" SELECT s.account, 0 AS stored, s.total AS summed FROM ({_ENTRY_SUMS}) s"
        " LEFT JOIN balances b ON b.account = s.account WHERE b.account IS NULL AND s.total <> 0"
        ") x ORDER BY account LIMIT $1",
        limit,
    )


async def negative_balances(db: Executor, pattern: str, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT account, amount FROM balances WHERE account LIKE $1 AND amount < 0 ORDER BY account LIMIT $2",
        pattern,
        limit,
    )


def month_expr(dialect: Dialect, column: str) -> str:
    """`YYYY-MM` (UTC) of an epoch-ms column."""
    if dialect == "postgres":
        return f"to_char(to_timestamp({column} / 1000) AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"strftime('%Y-%m', {column} / 1000, 'unixepoch')"


async def keys_over_budget(db: Executor, dialect: Dialect, limit: int) -> list[Row]:
    """(key, UTC month) whose summed trade cost exceeds the key's current monthly budget."""
    month = month_expr(dialect, "t.created_at")
    return await db.fetch_all(
        f"SELECT t.key_id, {month} AS month, SUM(t.cost_micros) AS spent, k.monthly_budget_cents"
        " FROM trades t JOIN api_keys k ON k.id = t.key_id WHERE k.monthly_budget_cents IS NOT NULL"
        f" GROUP BY t.key_id, {month}, k.monthly_budget_cents"
        " HAVING SUM(t.cost_micros) > k.monthly_budget_cents * 10000 ORDER BY t.key_id LIMIT $1",
        limit,
    )


async def key_spend(db: Executor, start_ms: int, end_ms: int) -> dict[str, int]:
    rows = await db.fetch_all(
        "SELECT key_id, SUM(cost_micros) AS spent FROM trades WHERE created_at >= $1 AND created_at < $2"
        " GROUP BY key_id",
        start_ms,
        end_ms,
    )
    return {str(r["key_id"]): int(r["spent"]) for r in rows}


# Each trade with its `trade` journal (if any) and that journal's lines summed by party.
_BUYER = "e.account = 'buyer:' || t.buyer_account_id || ':cash'"
_SELLER = (
    "(e.account = 'seller:' || t.seller_account_id || ':locked'"
    " OR e.account = 'seller:' || t.seller_account_id || ':reserve')"
)
_PLATFORM = "e.account IN ('platform:fees', 'platform:rounding')"
_TRADE_JOURNALS = (
    "SELECT t.id, t.cost_micros, t.seller_payout_micros, t.platform_fee_micros, j.id AS journal_id,"
    f" COALESCE(SUM(CASE WHEN {_BUYER} THEN e.amount ELSE 0 END), 0) AS buyer,"
    f" COALESCE(SUM(CASE WHEN {_SELLER} THEN e.amount ELSE 0 END), 0) AS seller,"
    f" COALESCE(SUM(CASE WHEN {_PLATFORM} THEN e.amount ELSE 0 END), 0) AS platform,"
    " COALESCE(SUM(CASE WHEN e.id IS NULL THEN 0"
    f" WHEN {_BUYER} OR {_SELLER} OR {_PLATFORM} THEN 0 ELSE 1 END), 0) AS foreign_lines"
    " FROM trades t LEFT JOIN journals j ON j.kind = 'trade' AND j.ref = t.id"
    " LEFT JOIN entries e ON e.journal_id = j.id"
    " GROUP BY t.id, t.cost_micros, t.seller_payout_micros, t.platform_fee_micros, j.id"
)


async def trade_journal_mismatches(db: Executor, limit: int) -> list[Row]:
    """A trade journal must exist iff cost > 0 and match the trade: buyer debit = cost, seller
    locked + reserve = seller payout, fees + rounding = platform fee, no other account."""
    return await db.fetch_all(
        f"SELECT * FROM ({_TRADE_JOURNALS}) x WHERE (journal_id IS NULL AND cost_micros > 0)"
        " OR (journal_id IS NOT NULL AND (cost_micros = 0 OR buyer <> -cost_micros"
        " OR seller <> seller_payout_micros OR platform <> platform_fee_micros OR foreign_lines > 0))"
        " ORDER BY id LIMIT $1",
        limit,
    )


async def orphan_trade_journals(db: Executor, limit: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT j.id, j.ref FROM journals j LEFT JOIN trades t ON t.id = j.ref"
        " WHERE j.kind = 'trade' AND t.id IS NULL ORDER BY j.id LIMIT $1",
        limit,
    )


async def bad_trade_amounts(db: Executor, limit: int) -> list[Row]:
    """Trades whose amounts contradict settle <= hold or the cost split."""
    return await db.fetch_all(
        "SELECT id, hold_micros, cost_micros, seller_payout_micros, platform_fee_micros FROM trades"
        " WHERE cost_micros < 0 OR seller_payout_micros < 0 OR platform_fee_micros < 0 OR hold_micros < 0"
        " OR (hold_micros > 0 AND cost_micros > hold_micros) OR (cost_micros > 0 AND hold_micros = 0)"
        " OR cost_micros <> seller_payout_micros + platform_fee_micros ORDER BY id LIMIT $1",
        limit,
    )


async def release_settlement_mismatches(db: Executor, limit: int) -> list[Row]:
    """Each earnings_release journal has one settlement row (same ref) of the amount it released, and
    each settlement row has its journal."""
    return await db.fetch_all(
        "SELECT ref, released, settled FROM ("
        " SELECT j.ref, SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS released,"
        " COALESCE(MAX(s.amount_micros), 0) AS settled FROM journals j JOIN entries e ON e.journal_id = j.id"
        " LEFT JOIN seller_settlements s ON s.ref = j.ref WHERE j.kind = 'earnings_release' GROUP BY j.ref"
        " UNION ALL"
        " SELECT s.ref, 0 AS released, s.amount_micros AS settled FROM seller_settlements s"
        " LEFT JOIN journals j ON j.kind = 'earnings_release' AND j.ref = s.ref WHERE j.id IS NULL"
        ") x WHERE released <> settled ORDER BY ref LIMIT $1",
        limit,
    )
