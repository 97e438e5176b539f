"""The operator's reference prices (`GET /api/admin/reference-prices`, `PUT/DELETE
/api/admin/reference-prices/:model`): the price a multiplier listing is a multiple of.

A model's reference follows the market (the median the pricing worker keeps, services/pricing.py) until
the operator sets one; `DELETE` returns it to the market. Both writes re-price the model's listings in
their transaction and bump the change sequence when one moved, so the data plane routes at the new
prices on the next request.
"""

from __future__ import annotations

from typing import Any

from dragonfly.domain.money import price_str
from dragonfly.errors import NotFound
from dragonfly.ids import iso, now_ms
from dragonfly.services.pricing import effective_reference, reprice_group
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import pricing as repo


def _p(value: Any) -> str | None:
    return None if value is None else price_str(int(value))


async def _view(db: Executor, model: str, kind: str, row: Row | None) -> dict[str, Any]:
    ref = effective_reference(row)
    listings, missing = await repo.count_multiplier_listings(db, model, kind)
    market = None
    override = None
    if row is not None and row["market_input_price"] is not None:
        market = {
            "input_price_per_mtok": _p(row["market_input_price"]),
            "output_price_per_mtok": _p(row["market_output_price"]),
            "cached_input_price_per_mtok": _p(row["market_cached_input_price"]),
            "listings": int(row["market_listings"]),
            "computed_at": iso(row["market_at"]),
        }
    if row is not None and row["override_input_price"] is not None:
        override = {
            "input_price_per_mtok": _p(row["override_input_price"]),
            "output_price_per_mtok": _p(row["override_output_price"]),
            "cached_input_price_per_mtok": _p(row["override_cached_input_price"]),
            "set_by": row["override_by"],
            "set_at": iso(row["override_at"]),
        }
    return {
        "model": model,
        "kind": kind,
        "source": None if ref is None else ref.source,
        "input_price_per_mtok": None if ref is None else price_str(ref.prices.input),
        "output_price_per_mtok": None if ref is None else price_str(ref.prices.output),
        "cached_input_price_per_mtok": None if ref is None else _p(ref.prices.cached_input),
        "market": market,
        "override": override,
        "multiplier_listings": listings,
        "reference_missing_listings": missing,
    }


async def list_references(db: Database) -> dict[str, Any]:
    """Every stored reference, and every model with multiplier listings but no reference at all."""
    rows = {(r["model"], r["kind"]): r for r in await repo.list_references(db)}
    keys = sorted(set(rows) | set(await repo.multiplier_groups(db)))
    return {"data": [await _view(db, model, kind, rows.get((model, kind))) for model, kind in keys]}


async def get_reference(db: Database, model: str, kind: str) -> dict[str, Any]:
    return await _view(db, model, kind, await repo.get_reference(db, model, kind))


async def set_reference(
    db: Database, model: str, kind: str, *, prices: tuple[int, int, int | None], by: str
) -> dict[str, Any]:
    """The operator's reference for (model, kind); the model's multiplier listings are re-priced now."""
    now = now_ms()
    async with db.transaction() as tx:
        await repo.lock_group(tx, db.dialect, model, kind)
        await repo.set_override(tx, model, kind, prices=prices, by=by, now=now)
        if await reprice_group(tx, db.dialect, model, kind, now=now):
            await changes.bump(tx)
        return await _view(tx, model, kind, await repo.get_reference(tx, model, kind))


async def clear_reference(db: Database, model: str, kind: str) -> dict[str, Any]:
    """Back to following the market: the override goes, the market median is recomputed now and the
    model's multiplier listings re-priced from it (or marked `reference_missing` when there is none)."""
    now = now_ms()
    async with db.transaction() as tx:
        await repo.lock_group(tx, db.dialect, model, kind)
        row = await repo.get_reference(tx, model, kind)
        if row is None or row["override_input_price"] is None:
            raise NotFound(f"No operator reference price is set for `{model}` ({kind}).")
        await repo.set_override(tx, model, kind, prices=None, by=None, now=now)
        await repo.delete_empty_reference(tx, model, kind)
        if await reprice_group(tx, db.dialect, model, kind, now=now):
            await changes.bump(tx)
        return await _view(tx, model, kind, await repo.get_reference(tx, model, kind))
