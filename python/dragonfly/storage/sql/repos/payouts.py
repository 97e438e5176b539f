"""Seller payouts: one row per payout asked for (`pending`), marked `paid` once by the operator. Ids are
UUIDv7, so id order is creation order and the id is the page cursor."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

_COLUMNS = "id, seller_account_id, amount_micros, status, created_at, paid_at, paid_by, note"


async def insert(
    tx: Executor, *, payout_id: str, seller_account_id: str, amount_micros: int, now: int
) -> None:
    await tx.execute(
        "INSERT INTO payouts (id, seller_account_id, amount_micros, status, created_at)"
        " VALUES ($1, $2, $3, 'pending', $4)",
        payout_id,
        seller_account_id,
        amount_micros,
        now,
    )


async def get(db: Executor, payout_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM payouts WHERE id = $1", payout_id)


async def mark_paid(tx: Executor, payout_id: str, *, actor_id: str, note: str | None, now: int) -> bool:
    """Pending -> paid; False when it was not pending (already paid)."""
    n = await tx.execute(
        "UPDATE payouts SET status = 'paid', paid_at = $2, paid_by = $3, note = $4"
        " WHERE id = $1 AND status = 'pending'",
        payout_id,
        now,
        actor_id,
        note,
    )
    return n > 0


async def page(
    db: Executor,
    *,
    before_id: str | None,
    limit: int,
    seller_account_id: str | None = None,
    status: str | None = None,
) -> list[Row]:
    """Newest first: every seller's payouts, or one seller's; only those in `status` when given."""
    where, args = ["1 = 1"], []
    for column, value in (("seller_account_id", seller_account_id), ("status", status), ("id", before_id)):
        if value is not None:
            args.append(value)
            where.append(f"{column} {'<' if column == 'id' else '='} ${len(args)}")
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM payouts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(args) + 1}",
        *args,
        limit,
    )


async def paid_total(db: Executor, seller_account_id: str) -> int:
    value = await db.fetch_val(
        "SELECT COALESCE(SUM(amount_micros), 0) FROM payouts"
        " WHERE seller_account_id = $1 AND status = 'paid'",
        seller_account_id,
    )
    return int(value or 0)
