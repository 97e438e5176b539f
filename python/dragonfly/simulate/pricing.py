"""Market pricing in the simulation: the control plane's pricing pass (services/pricing.py
`reprice_group`, every `pricing_period_s`) over each model's listings, with the rules of
domain/pricing.py — the reference (the operator's, else the median of the active fixed-price listings),
multiplier listings at multiplier x reference, then auto-follow listings at the lowest or median of the
model's other active listings, offset, never below their floor. A price war is auto-follow listings
following each other down to their floors.

The pass's order and what counts as active are services/pricing.py's `_Group`; the database writes
(history rows, contract terms, the 50 % review of a seller's own PATCH) have no part in routing and are
left out. A pass that moved a price reloads the snapshot, as the change-sequence bump does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dragonfly.domain import pricing as rules
from dragonfly.domain.pricing import Prices
from dragonfly.simulate.events import Clock
from dragonfly.simulate.market import SimListing, SimMarket

__all__ = ["PriceMove", "Pricer"]


@dataclass(frozen=True, slots=True)
class PriceMove:
    t_ms: int
    listing_id: str
    input_price: int
    output_price: int
    source: str  # multiplier | auto_follow


class Pricer:
    def __init__(
        self, market: SimMarket, clock: Clock, period_ms: int, on_move: Callable[[PriceMove], None]
    ) -> None:
        self._market = market
        self._clock = clock
        self._period_ms = period_ms
        self._on_move = on_move
        self._models = list(dict.fromkeys(x.spec.model for x in market.listings.values()))
        self.active = any(
            x.spec.price_multiplier is not None or x.spec.auto_follow is not None
            for x in market.listings.values()
        )

    def start(self) -> None:
        """A first pass now (a listing's creation re-prices its group at once), then every period."""
        if self.active:
            self._pass(None)

    def stop(self) -> None:
        """No pass after this (the run is over)."""
        self.active = False

    def _pass(self, _: object) -> None:
        if not self.active:
            return
        moved = False
        for model in self._models:
            moved |= self._group(model)
        if moved:
            self._market.reload()
        self._clock.after(self._period_ms, self._pass)

    def _group(self, model: str) -> bool:
        rows = [x for x in self._market.listings.values() if x.spec.model == model]

        def active(x: SimListing) -> bool:
            return x.contract_status in ("active", "degraded") and not x.reference_missing

        fixed = [
            x.prices
            for x in rows
            if active(x) and x.spec.price_multiplier is None and x.spec.auto_follow is None
        ]
        spec = rows[0].model
        reference: Prices | None
        if spec.reference_input_price is not None and spec.reference_output_price is not None:
            reference = Prices(spec.reference_input_price, spec.reference_output_price)
        else:
            reference = rules.market_reference(fixed)
        moved = False
        for x in rows:  # multiplier listings first: auto-follow then sees their new prices
            if x.spec.price_multiplier is None:
                continue
            if reference is None:
                moved |= self._apply(x, x.prices, missing=True, source="multiplier")
            else:
                target = rules.multiplier_prices(x.spec.price_multiplier, reference)
                moved |= self._apply(x, target, missing=False, source="multiplier")
        for x in rows:
            follow = x.spec.auto_follow
            if follow is None or x.spec.price_multiplier is not None:
                continue
            others = [o.prices for o in rows if o is not x and active(o)]
            followed = rules.follow_prices(
                x.prices,
                others,
                kind="chat",
                mode=follow.mode,
                offset_pct=follow.offset_pct,
                floor=follow.floor,
            )
            if followed is not None:
                moved |= self._apply(x, followed, missing=False, source="auto_follow")
        return moved

    def _apply(self, x: SimListing, target: Prices, *, missing: bool, source: str) -> bool:
        if target == x.prices and missing == x.reference_missing:
            return False
        if target != x.prices:
            self._on_move(PriceMove(self._clock.now, x.id, target.input, target.output, source))
        x.prices, x.reference_missing = target, missing
        return True
