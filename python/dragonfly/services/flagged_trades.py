"""The operator's list of trades flagged by the usage audit: the seller reported more completion tokens
than Dragonfly counted (more than 1.5x + 16, gateway/trade.py), newest first, one page at a time."""

from __future__ import annotations

import uuid
from typing import Any

from dragonfly.domain.money import usd
from dragonfly.errors import InvalidRequest
from dragonfly.ids import iso
from dragonfly.services import paging
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import flagged_trades as repo


def parse_page(limit: str | None, cursor: str | None) -> tuple[int, str | None]:
    """`limit` as every list endpoint takes it; `cursor` is the `next_cursor` of the previous page (a
    trade id)."""
    size, _ = paging.parse_page(limit, None)
    if cursor is None:
        return size, None
    try:
        return size, str(uuid.UUID(cursor))
    except ValueError:
        raise InvalidRequest("cursor must be the next_cursor of a previous page.", param="cursor") from None


def render(row: Row) -> dict[str, Any]:
    reported = row["native_tokens_completion"]
    counted = row["counted_tokens_completion"]
    return {
        "id": row["id"],
        "created_at": iso(row["created_at"]),
        "model": row["model"],
        "upstream_model": row["upstream_model"],
        "listing_id": row["listing_id"],
        "seller_id": row["seller_account_id"],
        "provider": row["provider"],
        "buyer_id": row["buyer_account_id"],
        "key_id": row["key_id"],
        "status": row["status"],
        "streamed": bool(row["streamed"]),
        "usage_audit": row["usage_audit"],
        "tokens_prompt": row["tokens_prompt"],
        "tokens_completion": row["tokens_completion"],
        "tokens_cached": row["tokens_cached"],
        "native_tokens_prompt": row["native_tokens_prompt"],
        "native_tokens_completion": reported,
        "counted_tokens_completion": counted,
        "excess_tokens_completion": (
            reported - counted if reported is not None and counted is not None else None
        ),
        "total_cost_usd": usd(int(row["cost_micros"])),
        "seller_payout_usd": usd(int(row["seller_payout_micros"])),
        "platform_fee_usd": usd(int(row["platform_fee_micros"])),
    }


async def list_flagged(db: Database, *, limit: int, cursor: str | None) -> dict[str, Any]:
    rows = await repo.page(db, before_id=cursor, limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "data": [render(r) for r in page],
        "has_more": more,
        "next_cursor": page[-1]["id"] if more and page else None,
    }
