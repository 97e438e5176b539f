"""In-memory listings and snapshots for tests of the data plane's pieces (router, health tracker, trade
handlers) without a database: every field has a plain default, a test names only what it is about."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo, Snapshot

_DEFAULTS: dict[str, Any] = {
    "seller_id": "seller-1",
    "model": "demo/echo-1",
    "upstream_model": "echo-1",
    "kind": "chat",
    "provider": "custom",
    "base_url": "http://127.0.0.1:1/v1",
    "api_key": "k",
    "input_price": 1,
    "output_price": 1,
    "cached_input_price": None,
    "rpm_cap": None,
    "concurrency_cap": None,
    "context_length": None,
    "status": "active",
    "contract_status": "active",
}


def listing_info(listing_id: str, **fields: Any) -> ListingInfo:
    return ListingInfo(id=listing_id, **{**_DEFAULTS, **fields})


def snapshot_of(
    listings: Iterable[ListingInfo],
    profiles: Iterable[ProfileInfo] = (),
    strategy_weights: dict[str, dict[str, float]] | None = None,
) -> Snapshot:
    """One snapshot holding these listings (grouped by model) and profiles."""
    listed = tuple(listings)
    by_model: dict[str, tuple[ListingInfo, ...]] = {}
    for x in listed:
        by_model[x.model] = (*by_model.get(x.model, ()), x)
    return Snapshot(
        seq=1,
        keys_by_hash={},
        profiles={p.id: p for p in profiles},
        default_profile={},
        listings_by_model=by_model,
        listings_by_id={x.id: x for x in listed},
        strategy_weights=strategy_weights or {},
    )
