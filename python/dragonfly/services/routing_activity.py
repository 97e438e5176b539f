"""The operator's view of routing decisions sampled by the data planes (gateway/activity.py writes them):
newest first, optionally for one model and/or one routing profile, each with its candidates, their
scores, features and weights, the listing chosen, why the others lost, and the trade's outcome."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.ids import iso
from dragonfly.services import paging
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import activity as repo


def lost_because(row: dict[str, Any], chosen: str | None, chosen_rank: int | None) -> str | None:
    """Why a candidate did not serve the request: its exclusion reason (`status_suspended`,
    `capacity_full`, `input_price_above_ceiling`, ...), `lower_score` (ranked below the chosen listing),
    `fallback` (ranked above it, but the request moved on: it failed or was refused at admission; the
    trade's receipt lists the attempts), or `not_used` (no listing served the request)."""
    if row["listing_id"] == chosen:
        return None
    if row["excluded"] is not None:
        return str(row["excluded"])
    if chosen is None:
        return "not_used"
    if chosen_rank is not None and row["rank"] is not None and row["rank"] < chosen_rank:
        return "fallback"
    return "lower_score"


def render(row: Row) -> dict[str, Any]:
    explanation = orjson.loads(row["explanation"] or "{}")
    weights = explanation.get("weights") or {}
    rows = explanation.get("rows") or []
    chosen = row["chosen_listing_id"]
    chosen_rank = next((r["rank"] for r in rows if r["listing_id"] == chosen), None)
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "instance": row["instance"],
        "model": row["model"],
        "profile_id": row["profile_id"],
        "strategy": row["strategy"],
        "seed": row["seed"],
        "trade_id": row["trade_id"],
        "chosen_listing_id": chosen,
        "outcome": row["outcome"],
        "error_code": row["error_code"],
        "listings": explanation.get("listings", len(rows)),
        "candidates": [
            {
                "listing_id": r["listing_id"],
                "rank": r["rank"],
                "chosen": r["listing_id"] == chosen,
                "excluded": r["excluded"],
                "lost_because": lost_because(r, chosen, chosen_rank),
                "score": r["score"],
                "features": r["features"],
                "weights": weights,
                "penalties": r["penalties"],
            }
            for r in rows
        ],
    }


def parse_query(model: str | None, profile_id: str | None, limit: str | None) -> dict[str, Any]:
    size, _ = paging.parse_page(limit, None)
    return {"model": model or None, "profile_id": profile_id or None, "limit": size}


async def recent(db: Database, *, model: str | None, profile_id: str | None, limit: int) -> dict[str, Any]:
    rows = await repo.recent(db, model=model, profile_id=profile_id, limit=limit)
    return {"data": [render(r) for r in rows]}
