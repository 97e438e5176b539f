"""Seller payouts: the seller asks for part of their available earnings (`POST /v1/market/payouts`), the
operator marks the payout paid once the money left (`POST /api/admin/payouts/:id/mark-paid`). Each step
is one journal (domain/payouts.py) committed with the payout row, under the seller's earnings lock
(repos/earnings.py `lock_seller`), so two requests can never both spend the same available balance."""

from __future__ import annotations

from typing import Any

from dragonfly.domain.ledger import seller_available
from dragonfly.domain.money import usd
from dragonfly.domain.payouts import (
    PAYOUT_PAID_KIND,
    PAYOUT_REQUEST_KIND,
    payout_paid_postings,
    payout_refusal,
    payout_request_postings,
)
from dragonfly.errors import Conflict, InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import earnings as earnings_repo
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.sql.repos import payouts as repo

STATUSES = ("pending", "paid")


def parse_status(value: str | None) -> str | None:
    if value is None or value in STATUSES:
        return value
    raise InvalidRequest("status must be pending or paid.", param="status")


def render(row: Row, *, operator: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "amount_usd": usd(int(row["amount_micros"])),
        "status": row["status"],
        "created_at": iso(int(row["created_at"])),
        "paid_at": None if row["paid_at"] is None else iso(int(row["paid_at"])),
        "note": row["note"],
    }
    if operator:
        out["seller_id"] = row["seller_account_id"]
        out["paid_by"] = row["paid_by"]
    return out


async def request_payout(db: Database, seller_id: str, *, amount_micros: int) -> dict[str, Any]:
    """Move `amount_micros` from the seller's available earnings to payouts pending; 400 when it is more
    than is available."""
    payout_id, now = new_id(), now_ms()
    async with db.transaction() as tx:
        await earnings_repo.lock_seller(tx, db.dialect, seller_id)
        available = await ledger.balance(tx, seller_available(seller_id))
        refusal = payout_refusal(amount_micros, available)
        if refusal is not None:
            raise InvalidRequest(
                f"{refusal} Asked {usd(amount_micros)} USD, available {usd(available)} USD.",
                param="amount_usd",
            )
        await repo.insert(
            tx, payout_id=payout_id, seller_account_id=seller_id, amount_micros=amount_micros, now=now
        )
        await ledger.post_journal(
            tx,
            kind=PAYOUT_REQUEST_KIND,
            ref=payout_id,
            postings=payout_request_postings(seller_id, amount_micros),
            now=now,
        )
        row = await repo.get(tx, payout_id)
    assert row is not None
    return render(row)


async def mark_paid(db: Database, payout_id: str, *, actor_id: str, note: str | None) -> dict[str, Any]:
    """Pending -> paid, with the journal that moves the money out; 409 when it is already paid."""
    now = now_ms()
    async with db.transaction() as tx:
        found = await repo.get(tx, payout_id)
        if found is None:
            raise NotFound("No payout with this id.")
        seller_id = str(found["seller_account_id"])
        await earnings_repo.lock_seller(tx, db.dialect, seller_id)
        if not await repo.mark_paid(tx, payout_id, actor_id=actor_id, note=note, now=now):
            row = await repo.get(tx, payout_id)
            paid_at = iso(int(row["paid_at"])) if row is not None and row["paid_at"] is not None else "?"
            raise Conflict(f"This payout was already marked paid at {paid_at}.")
        await ledger.post_journal(
            tx,
            kind=PAYOUT_PAID_KIND,
            ref=payout_id,
            postings=payout_paid_postings(seller_id, int(found["amount_micros"])),
            now=now,
            memo=note,
        )
        row = await repo.get(tx, payout_id)
    assert row is not None
    return render(row, operator=True)


async def _page(
    db: Database, *, limit: int, cursor: str | None, seller_id: str | None, status: str | None
) -> list[Row]:
    return await repo.page(db, before_id=cursor, limit=limit + 1, seller_account_id=seller_id, status=status)


def _listing(rows: list[Row], limit: int, *, operator: bool) -> dict[str, Any]:
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "data": [render(r, operator=operator) for r in page],
        "has_more": more,
        "next_cursor": page[-1]["id"] if more and page else None,
    }


async def list_payouts(
    db: Database, seller_id: str, *, limit: int, cursor: str | None, status: str | None = None
) -> dict[str, Any]:
    """The seller's own payouts, newest first."""
    rows = await _page(db, limit=limit, cursor=cursor, seller_id=seller_id, status=status)
    return _listing(rows, limit, operator=False)


async def list_all(db: Database, *, limit: int, cursor: str | None, status: str | None) -> dict[str, Any]:
    """Every seller's payouts, newest first (the operator's queue with `status=pending`)."""
    rows = await _page(db, limit=limit, cursor=cursor, seller_id=None, status=status)
    return _listing(rows, limit, operator=True)
