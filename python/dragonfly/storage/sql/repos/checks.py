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


async def _orphan_journals(db: Executor, kinds: str, table: str, key: str, limit: int) -> list[Row]:
    """Journals of `kinds` (an SQL list of literals) whose ref names no row of `table`.`key`."""
    return await db.fetch_all(
        f"SELECT j.id, j.kind, j.ref FROM journals j LEFT JOIN {table} o ON o.{key} = j.ref"
        f" WHERE j.kind IN ({kinds}) AND o.{key} IS NULL ORDER BY j.id LIMIT $1",
        limit,
    )


async def orphan_trade_journals(db: Executor, limit: int) -> list[Row]:
    return await _orphan_journals(db, "'trade'", "trades", "id", limit)


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


# -- trade reviews and payouts (migration 013) ----------------------------------------------------------

_REVIEW_BUYER = "e.account = 'buyer:' || r.buyer_account_id || ':cash'"
# The accounts a refund takes back from, each only ever debited.
_REVIEW_GIVERS = (
    "(e.account = 'seller:' || r.seller_account_id || ':locked'"
    " OR e.account = 'seller:' || r.seller_account_id || ':reserve'"
    " OR e.account IN ('platform:fees', 'platform:rounding'))"
)


async def review_mismatches(db: Executor, limit: int) -> list[Row]:
    """Resolved reviews against their trade and their `review_refund` journal (ref = the trade id): the
    trade is flagged; a dismissed review refunds nothing and has no journal; an upheld one has a journal
    iff it refunded something, the refund is at most the trade's cost, the buyer line is the refund and
    every other line is a debit of the trade's seller (locked, reserve) or the platform (fees, rounding)."""
    return await db.fetch_all(
        "SELECT * FROM ("
        " SELECT r.trade_id, r.state, r.refund_micros, t.cost_micros, t.usage_audit, j.id AS journal_id,"
        f" COALESCE(SUM(CASE WHEN {_REVIEW_BUYER} THEN e.amount ELSE 0 END), 0) AS buyer,"
        " COALESCE(SUM(CASE WHEN e.id IS NULL THEN 0"
        f" WHEN {_REVIEW_BUYER} OR ({_REVIEW_GIVERS} AND e.amount <= 0) THEN 0 ELSE 1 END), 0)"
        " AS foreign_lines"
        " FROM trade_reviews r JOIN trades t ON t.id = r.trade_id"
        " LEFT JOIN journals j ON j.kind = 'review_refund' AND j.ref = r.trade_id"
        " LEFT JOIN entries e ON e.journal_id = j.id"
        " GROUP BY r.trade_id, r.state, r.refund_micros, t.cost_micros, t.usage_audit, j.id"
        ") x WHERE usage_audit <> 'flagged' OR refund_micros > cost_micros"
        " OR (state = 'dismissed' AND (refund_micros <> 0 OR journal_id IS NOT NULL))"
        " OR (refund_micros > 0 AND journal_id IS NULL) OR (refund_micros = 0 AND journal_id IS NOT NULL)"
        " OR (journal_id IS NOT NULL AND (buyer <> refund_micros OR foreign_lines > 0))"
        " ORDER BY trade_id LIMIT $1",
        limit,
    )


async def orphan_review_journals(db: Executor, limit: int) -> list[Row]:
    return await _orphan_journals(db, "'review_refund'", "trade_reviews", "trade_id", limit)


async def uncovered_review_holds(db: Executor, limit: int) -> list[Row]:
    """Sellers whose open reviews hold more than their locked or reserve balance has."""
    return await db.fetch_all(
        "SELECT x.seller, x.held_locked, x.held_reserve, COALESCE(bl.amount, 0) AS locked,"
        " COALESCE(br.amount, 0) AS reserve FROM ("
        " SELECT t.seller_account_id AS seller,"
        " SUM(CASE WHEN h.account = 'seller:' || t.seller_account_id || ':locked' THEN h.amount ELSE 0 END)"
        " AS held_locked,"
        " SUM(CASE WHEN h.account = 'seller:' || t.seller_account_id || ':reserve' THEN h.amount ELSE 0 END)"
        " AS held_reserve"
        " FROM trades t JOIN journals j ON j.kind = 'trade' AND j.ref = t.id"
        " JOIN entries h ON h.journal_id = j.id"
        " WHERE t.usage_audit = 'flagged' AND t.seller_account_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM trade_reviews r WHERE r.trade_id = t.id)"
        " GROUP BY t.seller_account_id"
        ") x LEFT JOIN balances bl ON bl.account = 'seller:' || x.seller || ':locked'"
        " LEFT JOIN balances br ON br.account = 'seller:' || x.seller || ':reserve'"
        " WHERE x.held_locked > COALESCE(bl.amount, 0) OR x.held_reserve > COALESCE(br.amount, 0)"
        " ORDER BY x.seller LIMIT $1",
        limit,
    )


_AVAILABLE = "'seller:' || p.seller_account_id || ':available'"
_PENDING = "'seller:' || p.seller_account_id || ':payouts_pending'"


async def payout_mismatches(db: Executor, limit: int) -> list[Row]:
    """Each payout against its journals (ref = the payout id): a `payout_request` moving its amount from
    the seller's available earnings to payouts pending; once paid, a `payout_paid` moving it from payouts
    pending to external:payouts (and none while pending); no other lines."""
    req, paid = "j.kind = 'payout_request'", "j.kind = 'payout_paid'"
    return await db.fetch_all(
        "SELECT * FROM ("
        " SELECT p.id, p.status, p.amount_micros,"
        f" COALESCE(MAX(CASE WHEN {req} THEN 1 ELSE 0 END), 0) AS requested,"
        f" COALESCE(MAX(CASE WHEN {paid} THEN 1 ELSE 0 END), 0) AS paid,"
        f" COALESCE(SUM(CASE WHEN {req} AND e.account = {_AVAILABLE} THEN e.amount ELSE 0 END), 0)"
        " AS request_available,"
        f" COALESCE(SUM(CASE WHEN {req} AND e.account = {_PENDING} THEN e.amount ELSE 0 END), 0)"
        " AS request_pending,"
        f" COALESCE(SUM(CASE WHEN {paid} AND e.account = {_PENDING} THEN e.amount ELSE 0 END), 0)"
        " AS paid_pending,"
        f" COALESCE(SUM(CASE WHEN {paid} AND e.account = 'external:payouts' THEN e.amount ELSE 0 END), 0)"
        " AS paid_external,"
        " COALESCE(SUM(CASE WHEN e.id IS NULL THEN 0"
        f" WHEN {req} AND e.account IN ({_AVAILABLE}, {_PENDING}) THEN 0"
        f" WHEN {paid} AND e.account IN ({_PENDING}, 'external:payouts') THEN 0 ELSE 1 END), 0)"
        " AS foreign_lines"
        " FROM payouts p LEFT JOIN journals j ON j.kind IN ('payout_request', 'payout_paid') AND j.ref = p.id"
        " LEFT JOIN entries e ON e.journal_id = j.id"
        " GROUP BY p.id, p.status, p.amount_micros"
        ") x WHERE requested = 0 OR request_available <> -amount_micros OR request_pending <> amount_micros"
        " OR foreign_lines > 0 OR (status = 'pending' AND paid = 1) OR (status = 'paid' AND (paid = 0"
        " OR paid_pending <> -amount_micros OR paid_external <> amount_micros))"
        " ORDER BY id LIMIT $1",
        limit,
    )


async def orphan_payout_journals(db: Executor, limit: int) -> list[Row]:
    return await _orphan_journals(db, "'payout_request', 'payout_paid'", "payouts", "id", limit)


async def credit_request_mismatches(db: Executor, limit: int) -> list[Row]:
    """Operator credits made with an idempotency key (services/credits.py) whose `credit_requests` row and
    `operator_credit` journal disagree: no journal, a buyer-cash line other than the amount, or no
    balance recorded (the row and the journal commit together, so each of these is a corrupt write)."""
    return await db.fetch_all(
        "SELECT credit_id, account_id, amount_micros, balance_micros, journals, credited FROM ("
        " SELECT c.credit_id, c.account_id, c.amount_micros, c.balance_micros,"
        " COUNT(DISTINCT j.id) AS journals,"
        " COALESCE(SUM(CASE WHEN e.account = 'buyer:' || c.account_id || ':cash'"
        " THEN e.amount ELSE 0 END), 0) AS credited"
        " FROM credit_requests c"
        " LEFT JOIN journals j ON j.kind = 'operator_credit' AND j.ref = c.credit_id"
        " LEFT JOIN entries e ON e.journal_id = j.id"
        " GROUP BY c.credit_id, c.account_id, c.amount_micros, c.balance_micros"
        ") x WHERE journals <> 1 OR credited <> amount_micros OR balance_micros IS NULL"
        " ORDER BY credit_id LIMIT $1",
        limit,
    )
