"""Per-listing quality sources (table `listing_quality`, migration 006): the probe score the probe
worker keeps and the operator's override. The formula is in `domain/quality.py`."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.storage.ports import Executor, Row


async def get(db: Executor, listing_id: str) -> Row | None:
    return await db.fetch_one(
        "SELECT listing_id, probe_quality, probe_runs, quality_override, override_by, updated_at"
        " FROM listing_quality WHERE listing_id = $1",
        listing_id,
    )


async def recent_probe_checks(db: Executor, listing_id: str, limit: int) -> list[list[dict[str, Any]]]:
    """The check lists of the listing's newest `limit` probe runs."""
    rows = await db.fetch_all(
        "SELECT checks FROM probe_runs WHERE listing_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        listing_id,
        limit,
    )
    out: list[list[dict[str, Any]]] = []
    for r in rows:
        checks = orjson.loads(r["checks"] or "[]")
        out.append([c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else [])
    return out


async def set_probe(tx: Executor, listing_id: str, *, quality: float | None, runs: int, now: int) -> None:
    await tx.execute(
        "INSERT INTO listing_quality (listing_id, probe_quality, probe_runs, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (listing_id) DO UPDATE SET probe_quality = excluded.probe_quality,"
        " probe_runs = excluded.probe_runs, updated_at = excluded.updated_at",
        listing_id,
        quality,
        runs,
        now,
    )


async def set_override(tx: Executor, listing_id: str, *, quality: float | None, by: str, now: int) -> None:
    await tx.execute(
        "INSERT INTO listing_quality (listing_id, quality_override, override_by, updated_at)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (listing_id) DO UPDATE SET quality_override = excluded.quality_override,"
        " override_by = excluded.override_by, updated_at = excluded.updated_at",
        listing_id,
        quality,
        by,
        now,
    )
