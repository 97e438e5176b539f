"""Seller earnings: the release worker's sums over locked accounts, settlement rows, and the seller's
earnings reports over their trades."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from dragonfly.domain.ledger import seller_locked
from dragonfly.domain.payouts import LockedAccount
from dragonfly.storage.ports import Executor, Row

_LOCKED_PREFIX, _LOCKED_SUFFIX = "seller:", ":locked"


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


async def sellers_with_locked(db: Executor) -> list[str]:
    """Seller account ids whose locked earnings are positive (the only ones a release can move)."""
    rows = await db.fetch_all(
        "SELECT account FROM balances WHERE account LIKE $1 AND amount > 0 ORDER BY account",
        f"{_LOCKED_PREFIX}%{_LOCKED_SUFFIX}",
    )
    return [str(r["account"])[len(_LOCKED_PREFIX) : -len(_LOCKED_SUFFIX)] for r in rows]


async def locked_account(tx: Executor, seller_id: str, cutoff: int) -> tuple[LockedAccount, int]:
    """The locked account's balance, credits posted before `cutoff` (sum and count) and all debits."""
    account = seller_locked(seller_id)
    row = await tx.fetch_one(
        "SELECT COALESCE(SUM(CASE WHEN amount > 0 AND created_at < $2 THEN amount ELSE 0 END), 0) AS matured,"
        " COALESCE(SUM(CASE WHEN amount > 0 AND created_at < $2 THEN 1 ELSE 0 END), 0) AS matured_count,"
        " COALESCE(SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END), 0) AS debits"
        " FROM entries WHERE account = $1",
        account,
        cutoff,
    )
    bal = await tx.fetch_val("SELECT amount FROM balances WHERE account = $1", account)
    assert row is not None
    acct = LockedAccount(
        balance=int(bal or 0), matured_credits=int(row["matured"]), debits=int(row["debits"])
    )
    return acct, int(row["matured_count"])


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


async def released_total(db: Executor, seller_id: str) -> int:
    value = await db.fetch_val(
        "SELECT COALESCE(SUM(amount_micros), 0) FROM seller_settlements WHERE seller_account_id = $1",
        seller_id,
    )
    return int(value or 0)


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
