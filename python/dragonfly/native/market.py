"""Typed facade over the native listing market (`dragonfly._native.Market`).

The only module that imports `dragonfly._native` for ranking. Prices are integer micro-USD per 1M tokens;
time (`now_ms`) and randomness (`seed`) are always passed in. The scoring formula is documented in
`rust_core/src/score/market.rs`.

Hot path: register profiles once with `set_profile` (a stored profile: `register_profile`), then call
`rank(model, profile_id, now_ms, seed)`.

One weight vocabulary from the API to the scorer: `FEATURES` (`latency` is time to first token). The
control plane registers every profile it is asked to store into a throwaway `Market` with the same
`register_profile` the data plane uses, so a profile the API accepts is one the data plane can rank with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, TypedDict

from dragonfly import _native

__all__ = [
    "FEATURES",
    "OPERATOR_STRATEGIES",
    "STRATEGIES",
    "ContractStatus",
    "Explanation",
    "ListingStatus",
    "Market",
    "MarketError",
    "Strategy",
    "default_strategy_weights",
    "register_profile",
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
# The strategies whose weights the operator sets (`custom` takes its weights from each profile).
OPERATOR_STRATEGIES: Final[tuple[Strategy, ...]] = STRATEGIES[:4]
FEATURES: Final = ("price", "latency", "throughput", "reliability", "quality")

Market = _native.Market
"""`Market()`: `upsert_listing`, `remove_listing`, `set_inflight`, `record_result`, `record_ttft_floor`,
`set_profile`, `remove_profile`, `set_strategy_weights`, `strategy_weights`, `rank`, `explain`. Raises
`MarketError` for an unknown profile/strategy/status or invalid values."""

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


def default_strategy_weights() -> dict[str, dict[str, float]]:
    """The native core's built-in weights of every operator-tunable strategy (un-normalised)."""
    fresh = Market()
    return {s: fresh.strategy_weights(s) for s in OPERATOR_STRATEGIES}


def _int_or_none(value: Any) -> int | None:
    # Stored profile configs hold price ceilings as integer micro-USD per 1M tokens.
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _weights(strategy: str, config: Mapping[str, Any]) -> dict[str, float] | None:
    """A custom profile's weights, every feature named (a missing one is 0); other strategies rank with
    the strategy's weights (the API refuses `weights` on them, a legacy stored value is not used)."""
    if strategy != "custom":
        return None
    raw = config.get("weights")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise MarketError("weights must be an object")
    return {**dict.fromkeys(FEATURES, 0.0), **{str(k): float(v) for k, v in raw.items()}}


def register_profile(market: Market, profile_id: str, strategy: str, config: Mapping[str, Any]) -> None:
    """Register a stored routing profile (`services/profiles.py` documents `config`). Raises
    `MarketError` when the market cannot rank with it (unknown strategy or weight, custom without
    weights, all-zero weights, malformed values)."""
    try:
        market.set_profile(
            profile_id,
            strategy=strategy,
            weights=_weights(strategy, config),
            providers_allow=config.get("providers_allow"),
            providers_deny=config.get("providers_deny"),
            sellers_deny=config.get("sellers_deny"),
            max_input_price=_int_or_none(config.get("max_input_price")),
            max_output_price=_int_or_none(config.get("max_output_price")),
            max_ttft_ms=_float_or_none(config.get("max_ttft_ms")),
            min_throughput_tps=_float_or_none(config.get("min_throughput_tps")),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise MarketError(f"malformed routing profile: {exc}") from None
