"""Trades flagged by the usage audit: the seller reported more prompt or completion tokens than Dragonfly
counted (more than 1.5x + 16, domain/billing.py), newest first, one page at a time, each with its review
(domain/reviews.py: open, upheld or dismissed). The operator sees every seller's
(`/api/admin/flagged-trades`); a seller sees their own as trade reviews (`/v1/market/trade-reviews`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from dragonfly.domain.money import usd
from dragonfly.domain.reviews import STATES, Billed, excess
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


def parse_state(value: str | None) -> str | None:
    """The `state` filter: open, upheld or dismissed (None: every review)."""
    if value is None or value in STATES:
        return value
    raise InvalidRequest("state must be one of open, upheld, dismissed.", param="state")


def billed(row: Row) -> Billed:
    """What a review prices the trade's excess from (domain/reviews.py). A per-character trade's prompt is
    its characters, which Dragonfly counted itself: not contested."""
    counted_prompt: int | None
    if row["price_unit"] == "character":
        prompt = counted_prompt = int(row["characters_prompt"] or 0)
    else:
        prompt = int(row["tokens_prompt"])
        counted_prompt = None if row["counted_tokens_prompt"] is None else int(row["counted_tokens_prompt"])
    counted_completion = row["counted_tokens_completion"]
    return Billed(
        charge=int(row["cost_micros"]),
        prompt=prompt,
        completion=int(row["tokens_completion"]),
        cached=int(row["tokens_cached"]),
        counted_prompt=counted_prompt,
        counted_completion=None if counted_completion is None else int(counted_completion),
        input_price=int(row["input_price"]),
        output_price=int(row["output_price"]),
        cached_input_price=None if row["cached_input_price"] is None else int(row["cached_input_price"]),
    )


def render_state(row: Row, *, operator: bool) -> dict[str, Any]:
    """The review of a flagged trade: its state; what it holds of the seller's earnings while open (the
    seller's whole share of the trade); the excess (priced now while open, as resolved afterwards); the
    refund the buyer got; and the resolution."""
    state = row["review_state"] or "open"
    is_open = row["review_state"] is None
    out: dict[str, Any] = {
        "state": state,
        "held_usd": usd(int(row["seller_payout_micros"]) if is_open else 0),
        "excess_usd": usd(excess(billed(row)) if is_open else int(row["review_excess_micros"])),
        "refund_usd": usd(0 if is_open else int(row["review_refund_micros"])),
        "note": row["review_note"],
        "resolved_at": None if is_open else iso(int(row["review_resolved_at"])),
    }
    if operator:
        out["resolved_by"] = row["review_resolved_by"]
    return out


def render_flag(row: Row) -> dict[str, Any]:
    """Why the trade is flagged: `trade` (its own report was above the review threshold when it settled)
    or `market` (the market-relative audit's alarm on the seller, with its evidence: the token kind, the
    seller's reported / counted ratio over the block that raised it against the market's, the detector's
    statistic, and how many of the seller's trades of the model it had seen)."""
    if row["alarm_id"] is None:
        return {"flagged_by": "trade", "market_audit": None}
    return {
        "flagged_by": "market",
        "market_audit": {
            "alarm_id": row["alarm_id"],
            "raised_at": iso(int(row["alarm_created_at"])),
            "kind": row["alarm_kind"],
            "reported_to_counted": round(float(row["alarm_ratio"]), 4),
            "market_reported_to_counted": round(float(row["alarm_reference"]), 4),
            "statistic": round(float(row["alarm_statistic"]), 4),
            "trades_seen": int(row["alarm_trades"]),
        },
    }


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
        **render_flag(row),
        "tokens_prompt": row["tokens_prompt"],
        "tokens_completion": row["tokens_completion"],
        "tokens_cached": row["tokens_cached"],
        "native_tokens_prompt": row["native_tokens_prompt"],
        "native_tokens_completion": reported,
        "counted_tokens_prompt": row["counted_tokens_prompt"],
        "counted_tokens_completion": counted,
        "excess_tokens_completion": (
            reported - counted if reported is not None and counted is not None else None
        ),
        "total_cost_usd": usd(int(row["cost_micros"])),
        "seller_payout_usd": usd(int(row["seller_payout_micros"])),
        "platform_fee_usd": usd(int(row["platform_fee_micros"])),
        "review": render_state(row, operator=True),
    }


def render_review(row: Row) -> dict[str, Any]:
    """A seller's view of one of their flagged trades and its review."""
    return {
        "trade_id": row["id"],
        "created_at": iso(row["created_at"]),
        "model": row["model"],
        "listing_id": row["listing_id"],
        "tokens_prompt": row["tokens_prompt"],
        "tokens_completion": row["tokens_completion"],
        "tokens_cached": row["tokens_cached"],
        "native_tokens_prompt": row["native_tokens_prompt"],
        "native_tokens_completion": row["native_tokens_completion"],
        "counted_tokens_prompt": row["counted_tokens_prompt"],
        "counted_tokens_completion": row["counted_tokens_completion"],
        "cost_usd": usd(int(row["cost_micros"])),
        "seller_payout_usd": usd(int(row["seller_payout_micros"])),
        **render_flag(row),
        "review": render_state(row, operator=False),
    }


async def _page(
    db: Database,
    *,
    limit: int,
    cursor: str | None,
    seller_account_id: str | None,
    state: str | None,
    render_row: Callable[[Row], dict[str, Any]],
) -> dict[str, Any]:
    rows = await repo.page(
        db, before_id=cursor, limit=limit + 1, seller_account_id=seller_account_id, state=state
    )
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "data": [render_row(r) for r in page],
        "has_more": more,
        "next_cursor": page[-1]["id"] if more and page else None,
    }


async def list_flagged(
    db: Database, *, limit: int, cursor: str | None, state: str | None = None
) -> dict[str, Any]:
    return await _page(db, limit=limit, cursor=cursor, seller_account_id=None, state=state, render_row=render)


async def list_reviews(
    db: Database, seller_account_id: str, *, limit: int, cursor: str | None, state: str | None = None
) -> dict[str, Any]:
    """The seller's own flagged trades (those settled on their listings)."""
    return await _page(
        db,
        limit=limit,
        cursor=cursor,
        seller_account_id=seller_account_id,
        state=state,
        render_row=render_review,
    )
