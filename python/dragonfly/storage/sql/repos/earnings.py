"""Seller earnings: the release worker's sums over locked and reserve accounts (less what open trade
reviews hold), settlement rows, the per-seller lock every earnings writer takes, and the seller's
earnings reports over their trades."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from dragonfly.domain.ledger import seller_locked, seller_reserve
from dragonfly.domain.payouts import LockedAccount
from dragonfly.storage.ports import Dialect, Executor, Row

_LOCKED_PREFIX, _LOCKED_SUFFIX = "seller:", ":locked"
_RESERVE_SUFFIX = ":reserve"
# pg advisory lock namespace of a seller's earnings (7243001: migrations): releases, review resolutions
# and payouts of one seller run one at a time, so what each reads stays true until it commits.
_LOCK_CLASS = 7243002


async def lock_seller(tx: Executor, dialect: Dialect, seller_id: str) -> None:
    """Take the seller's earnings lock for the rest of the transaction (PostgreSQL; SQLite's
    `BEGIN IMMEDIATE` already serialises writers)."""
    if dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, seller_id)


@dataclass(frozen=True, slots=True)
class SettlementRow:
    id: str
    seller_account_id: str
    amount_micros: int
    trades_count: int
    period_start: int
    period_end: int
    created_at: int
    ref: str


async def _sellers_with(db: Executor, suffix: str) -> list[str]:
    rows = await db.fetch_all(
        "SELECT account FROM balances WHERE account LIKE $1 AND amount > 0 ORDER BY account",
        f"{_LOCKED_PREFIX}%{suffix}",
    )
    return [str(r["account"])[len(_LOCKED_PREFIX) : -len(suffix)] for r in rows]


async def sellers_with_locked(db: Executor) -> list[str]:
    """Seller account ids whose locked earnings are positive (the only ones a release can move)."""
    return await _sellers_with(db, _LOCKED_SUFFIX)


async def sellers_with_reserve(db: Executor) -> list[str]:
    """Seller account ids whose reserve is positive."""
    return await _sellers_with(db, _RESERVE_SUFFIX)


# The credits of one seller's flagged trades without a resolution (open reviews) to one account: joined
# through the trade's journal (kind `trade`, ref = trade id). $1 account, $2 cutoff, $3 seller.
_HELD = (
    "FROM trades t JOIN journals j ON j.kind = 'trade' AND j.ref = t.id"
    " JOIN entries h ON h.journal_id = j.id AND h.account = $1"
    " WHERE t.seller_account_id = $3 AND t.usage_audit = 'flagged'"
    " AND NOT EXISTS (SELECT 1 FROM trade_reviews r WHERE r.trade_id = t.id)"
)
# Everything one release needs, in ONE statement: PostgreSQL (READ COMMITTED) gives a statement one
# snapshot, so a flagged trade committing meanwhile is either in the balance, the credits and the held
# sums alike, or in none of them.
_ACCOUNT = (
    "SELECT (SELECT amount FROM balances WHERE account = $1) AS balance,"
    " (SELECT COALESCE(SUM(CASE WHEN amount > 0 AND created_at < $2 THEN amount ELSE 0 END), 0)"
    " FROM entries WHERE account = $1) AS matured,"
    " (SELECT COALESCE(SUM(CASE WHEN amount > 0 AND created_at < $2 THEN 1 ELSE 0 END), 0)"
    " FROM entries WHERE account = $1) AS matured_count,"
    " (SELECT COALESCE(SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END), 0)"
    " FROM entries WHERE account = $1) AS debits,"
    f" (SELECT COALESCE(SUM(h.amount), 0) {_HELD}) AS held,"
    f" (SELECT COALESCE(SUM(CASE WHEN h.created_at < $2 THEN h.amount ELSE 0 END), 0) {_HELD})"
    " AS held_matured,"
    f" (SELECT COALESCE(SUM(CASE WHEN h.created_at < $2 THEN 1 ELSE 0 END), 0) {_HELD})"
    " AS held_matured_count"
)


async def _account(tx: Executor, account: str, seller_id: str, cutoff: int) -> tuple[LockedAccount, int]:
    row = await tx.fetch_one(_ACCOUNT, account, cutoff, seller_id)
    assert row is not None
    acct = LockedAccount(
        balance=int(row["balance"] or 0),
        matured_credits=int(row["matured"]),
        debits=int(row["debits"]),
        held=int(row["held"]),
        held_matured=int(row["held_matured"]),
    )
    return acct, int(row["matured_count"]) - int(row["held_matured_count"])


async def locked_account(tx: Executor, seller_id: str, cutoff: int) -> tuple[LockedAccount, int]:
    """The locked account's balance, credits posted before `cutoff`, all debits, what open reviews hold
    (all and before `cutoff`), and how many matured credits are not held."""
    return await _account(tx, seller_locked(seller_id), seller_id, cutoff)


async def reserve_account(tx: Executor, seller_id: str, cutoff: int) -> LockedAccount:
    """The same sums over the seller's reserve."""
    acct, _ = await _account(tx, seller_reserve(seller_id), seller_id, cutoff)
    return acct


async def held(db: Executor, seller_id: str) -> tuple[int, int]:
    """(locked, reserve) micro-USD the seller's open reviews hold."""
    row = await db.fetch_one(
        "SELECT COALESCE(SUM(CASE WHEN h.account = $1 THEN h.amount ELSE 0 END), 0) AS locked,"
        " COALESCE(SUM(CASE WHEN h.account = $2 THEN h.amount ELSE 0 END), 0) AS reserve"
        " FROM trades t JOIN journals j ON j.kind = 'trade' AND j.ref = t.id"
        " JOIN entries h ON h.journal_id = j.id AND h.account IN ($1, $2)"
        " WHERE t.seller_account_id = $3 AND t.usage_audit = 'flagged'"
        " AND NOT EXISTS (SELECT 1 FROM trade_reviews r WHERE r.trade_id = t.id)",
        seller_locked(seller_id),
        seller_reserve(seller_id),
        seller_id,
    )
    assert row is not None
    return int(row["locked"]), int(row["reserve"])


async def last_upheld_at(tx: Executor, seller_id: str) -> int | None:
    """When the seller's latest upheld review was resolved (None: never)."""
    value = await tx.fetch_val(
        "SELECT MAX(resolved_at) FROM trade_reviews WHERE seller_account_id = $1 AND state = 'upheld'",
        seller_id,
    )
    return int(value) if value is not None else None


async def settled_so_far(tx: Executor, seller_id: str) -> tuple[int | None, int]:
    """(period_end of the latest settlement or None, trades counted by all settlements so far)."""
    row = await tx.fetch_one(
        "SELECT MAX(period_end) AS last_end, COALESCE(SUM(trades_count), 0) AS counted"
        " FROM seller_settlements WHERE seller_account_id = $1",
        seller_id,
    )
    if row is None or row["last_end"] is None:
        return None, 0
    return int(row["last_end"]), int(row["counted"])


async def first_credit_at(tx: Executor, seller_id: str) -> int | None:
    value = await tx.fetch_val(
        "SELECT MIN(created_at) FROM entries WHERE account = $1 AND amount > 0", seller_locked(seller_id)
    )
    return int(value) if value is not None else None


async def insert_settlement(tx: Executor, row: SettlementRow) -> bool:
    n = await tx.execute(
        "INSERT INTO seller_settlements (id, seller_account_id, amount_micros, trades_count, period_start,"
        " period_end, created_at, ref) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (seller_account_id, period_end) DO NOTHING",
        *astuple(row),
    )
    return n > 0


async def settlements(db: Executor, seller_id: str, *, before_end: int | None, limit: int) -> list[Row]:
    """Newest first; `(seller, period_end)` is unique, so period_end is the cursor."""
    if before_end is None:
        return await db.fetch_all(
            "SELECT * FROM seller_settlements WHERE seller_account_id = $1 ORDER BY period_end DESC LIMIT $2",
            seller_id,
            limit,
        )
    return await db.fetch_all(
        "SELECT * FROM seller_settlements WHERE seller_account_id = $1 AND period_end < $2"
        " ORDER BY period_end DESC LIMIT $3",
        seller_id,
        before_end,
        limit,
    )


_SUMS = (
    "COUNT(*) AS requests, COALESCE(SUM(tokens_prompt), 0) AS prompt_tokens,"
    " COALESCE(SUM(tokens_completion), 0) AS completion_tokens,"
    " COALESCE(SUM(seller_payout_micros), 0) AS payout_micros"
)


async def by_listing_model(db: Executor, seller_id: str, *, start_ms: int, end_ms: int) -> list[Row]:
    return await db.fetch_all(
        f"SELECT listing_id, model, {_SUMS} FROM trades"
        " WHERE seller_account_id = $1 AND created_at >= $2 AND created_at < $3"
        " GROUP BY listing_id, model ORDER BY listing_id, model",
        seller_id,
        start_ms,
        end_ms,
    )


async def by_bucket(db: Executor, seller_id: str, *, bucket_ms: int, start_ms: int, end_ms: int) -> list[Row]:
    """Sums per time bucket (bucket number = created_at // bucket_ms, UTC-aligned)."""
    width = int(bucket_ms)  # an integer from a fixed set, inlined so GROUP BY matches on both dialects
    return await db.fetch_all(
        f"SELECT created_at / {width} AS bucket, {_SUMS} FROM trades"
        " WHERE seller_account_id = $1 AND created_at >= $2 AND created_at < $3"
        f" GROUP BY created_at / {width} ORDER BY bucket",
        seller_id,
        start_ms,
        end_ms,
    )
