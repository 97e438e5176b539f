"""Typed facade over the native listing market (`dragonfly._native.Market`).

The only module that imports `dragonfly._native` for ranking. Prices are integer micro-USD per 1M tokens;
time (`now_ms`) and randomness (`seed`) are always passed in. The scoring formula is documented in
`rust_core/src/score/market.rs`.

Hot path: register profiles once with `set_profile`, then call `rank(model, profile_id, now_ms, seed)`.
"""

from __future__ import annotations

from typing import Final, Literal, TypedDict

from dragonfly import _native

__all__ = [
    "FEATURES",
    "STRATEGIES",
    "ContractStatus",
    "Explanation",
    "ListingStatus",
    "Market",
    "MarketError",
    "Strategy",
]

Strategy = Literal["cost_first", "balanced", "reliability_first", "quality_first", "custom"]
ListingStatus = Literal["active", "pending", "paused", "price_review", "suspended"]
ContractStatus = Literal["active", "degraded", "suspended", "pending"]

STRATEGIES: Final[tuple[Strategy, ...]] = (
    "cost_first",
    "balanced",
    "reliability_first",
    "quality_first",
    "custom",
)
FEATURES: Final = ("price", "ttft", "throughput", "reliability", "quality")

Market = _native.Market
"""`Market()`: `upsert_listing`, `remove_listing`, `set_inflight`, `record_result`, `set_profile`,
`remove_profile`, `set_strategy_weights`, `strategy_weights`, `rank`, `explain`. Raises `MarketError`
for an unknown profile/strategy/status or invalid values."""

MarketError = _native.MarketError


class Explanation(TypedDict):
    """One row of `Market.explain` (the runtime value is a plain dict of this shape)."""

    listing_id: str
    rank: int | None
    """Position in `rank`'s answer for the same arguments, or None when excluded."""
    excluded: str | None
    """Reason code, e.g. `status_paused`, `capacity_full`, `input_price_above_ceiling`, `provider_denied`."""
    score: float
    features: dict[str, float]
    weights: dict[str, float]
    penalties: list[str]
