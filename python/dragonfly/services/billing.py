"""A buyer's balance and journal lines."""

from __future__ import annotations

from typing import Any

from dragonfly.domain.ledger import buyer_cash
from dragonfly.domain.money import usd
from dragonfly.ids import iso
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import ledger, statements
from dragonfly.storage.state.ports import StateStore


async def balance(db: Database, account_id: str, holds: StateStore | None = None) -> dict[str, Any]:
    """Settled balance from the ledger; `held` is what in-flight requests have reserved, read from the
    shared state store (Redis). In embedded mode the holds live inside the data-plane process and are
    not visible here, so held reads 0 there. Raises 503 when the configured store is unreachable."""
    amount = await ledger.balance(db, buyer_cash(account_id))
    held = await holds.held_micros(account_id) if holds is not None else 0
    return {"balance_usd": usd(amount), "held_usd": usd(held), "available_usd": usd(amount - held)}


async def transactions(db: Database, account_id: str, *, limit: int, cursor: int | None) -> dict[str, Any]:
    """The buyer's cash lines, newest first. A line's `id` is its stored UUID; `next_cursor` is the last
    line's integer row id (lines before it come next), passed back as `cursor`."""
    rows = await statements.lines(db, account=buyer_cash(account_id), before_id=cursor, limit=limit + 1)
    page = rows[:limit]
    data = [
        {
            "id": r["public_id"],
            "kind": r["kind"],
            "ref": r["ref"],
            "memo": r["memo"],
            "amount_usd": usd(int(r["amount"])),
            "created_at": iso(int(r["created_at"])),
        }
        for r in page
    ]
    more = len(rows) > limit
    return {"data": data, "has_more": more, "next_cursor": str(page[-1]["id"]) if more and page else None}
