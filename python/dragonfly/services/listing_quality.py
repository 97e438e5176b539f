"""Per-listing quality: the probe score kept after every probe run, and the operator's override
(`GET/PUT /api/admin/listings/:id/quality`). The formula is `domain/quality.py`'s; both writes bump the
change sequence in their transaction, so every data-plane instance ranks with the new value at its next
snapshot load."""

from __future__ import annotations

from typing import Any

from dragonfly.domain.quality import PROBE_WINDOW, market_quality, probe_quality
from dragonfly.errors import NotFound
from dragonfly.ids import iso, now_ms
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import listing_quality as repo
from dragonfly.storage.sql.repos import listings as listings_repo


def render(listing_id: str, row: Row | None) -> dict[str, Any]:
    probe = None if row is None or row["probe_quality"] is None else float(row["probe_quality"])
    override = None if row is None or row["quality_override"] is None else float(row["quality_override"])
    quality, blends = market_quality(probe, override)
    return {
        "listing_id": listing_id,
        "quality": quality,
        "source": "override" if override is not None else ("probes" if probe is not None else "default"),
        "blends_live_success": blends,
        "probe_quality": probe,
        "probe_runs": 0 if row is None else int(row["probe_runs"]),
        "quality_override": override,
        "override_by": None if row is None else row["override_by"],
        "updated_at": None if row is None else iso(row["updated_at"]),
    }


async def refresh_probe_quality(tx: Executor, listing_id: str, now: int) -> None:
    """Recompute the listing's probe score from its newest probe runs (call in the transaction that
    records a run); bumps the change sequence."""
    runs = await repo.recent_probe_checks(tx, listing_id, PROBE_WINDOW)
    await repo.set_probe(tx, listing_id, quality=probe_quality(runs), runs=len(runs), now=now)
    await changes.bump(tx)


async def _existing(db: Executor, listing_id: str) -> None:
    if await listings_repo.get(db, listing_id) is None:
        raise NotFound("Listing not found.")


async def get_quality(db: Database, listing_id: str) -> dict[str, Any]:
    await _existing(db, listing_id)
    return render(listing_id, await repo.get(db, listing_id))


async def set_override(db: Database, listing_id: str, *, quality: float | None, by: str) -> dict[str, Any]:
    """Set (a value in [0, 1]) or clear (None: back to the computed value) the operator's override."""
    async with db.transaction() as tx:
        await _existing(tx, listing_id)
        await repo.set_override(tx, listing_id, quality=quality, by=by, now=now_ms())
        await changes.bump(tx)
        row = await repo.get(tx, listing_id)
    return render(listing_id, row)
