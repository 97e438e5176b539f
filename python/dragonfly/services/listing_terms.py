"""A listing's contract terms (model, prices, caps), as the seller reads them on its contract: written
when a listing is created, when its prices or caps change (services/listings.py) and when the pricing
worker re-prices it (services/pricing.py)."""

from __future__ import annotations

from typing import Any

from dragonfly.domain.money import price_str
from dragonfly.storage.ports import Row


def terms_of(row: Row) -> dict[str, Any]:
    cached = row["cached_input_price"]
    return {
        "model": row["model"],
        "upstream_model": row["upstream_model"],
        "kind": row["kind"],
        "prices": {
            "input_per_mtok": price_str(row["input_price"]),
            "output_per_mtok": price_str(row["output_price"]),
            "cached_input_per_mtok": None if cached is None else price_str(cached),
        },
        "caps": {"rpm": row["rpm_cap"], "concurrency": row["concurrency_cap"]},
    }
