"""Market pricing rules: reference prices, multiplier pricing, auto-follow targets and payout floors.

Pure: integers in, integers out (prices are micro-USD per 1M units, as everywhere, domain/money.py);
the decimals a seller states (`price_multiplier`, `offset_pct`) are `Decimal`, never floats. The
control plane's pricing worker (workers/pricing.py, services/pricing.py) applies these rules to the
stored listings; the data plane's snapshot applies `exclusion` to decide what it may route.

- **Reference price** of a model (and kind): the operator's, when set, else the market's — the median,
  price by price, of the model's active fixed-price listings (neither multiplier nor auto-follow)
  priced per token (`market_reference`).
- **Multiplier listing**: priced at multiplier × reference, each price rounded half up to a micro-USD
  (`multiplier_prices`); without a reference it is not routable (`REFERENCE_MISSING`).
- **Auto-follow listing**: each followed price moves to the lowest or median of the same price among the
  model's OTHER active listings, × (1 + offset_pct / 100), never below the floor (`follow_prices`).
- **Payout floor**: a listing whose seller payout per 1M units, at any price a trade may be billed at,
  is below its `payout_floor` is not routable (`PAYOUT_BELOW_FLOOR`). The seller payout is the price less
  the platform fee — the seller's reserve share is the seller's money, held back, not a deduction
  (DESIGN.md §4: "Seller payout = price × (1 − platform fee); a share goes to reserve").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from dragonfly.domain.money import BPS

MAX_PRICE = 10_000 * 1_000_000
"""$10,000 per 1M units, the largest price the API accepts (domain/money.py): derived prices are capped."""

FollowMode = Literal["off", "lowest", "median"]
FOLLOW_MODES: tuple[FollowMode, ...] = ("off", "lowest", "median")

# Why the data plane does not route a listing for its price (the routing explanation's `excluded`).
REFERENCE_MISSING = "reference_price_missing"
PAYOUT_BELOW_FLOOR = "payout_below_floor"

# The kinds whose trades are billed on output tokens; embeddings and speech bill their input only, so
# their output price is neither followed nor held against a payout floor.
BILLS_OUTPUT = frozenset({"chat"})


@dataclass(frozen=True, slots=True)
class Prices:
    """A listing's prices (or a reference), micro-USD per 1M units; `cached_input` None = not stated."""

    input: int
    output: int
    cached_input: int | None = None


def median(values: Iterable[int]) -> int | None:
    """The median of integer prices; of an even count, the mean of the middle two rounded down (at most
    half a micro-USD per 1M units). None for no values."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) // 2


def _round(value: Decimal) -> int:
    return min(MAX_PRICE, max(0, int(value.to_integral_value(rounding=ROUND_HALF_UP))))


def market_reference(listings: Sequence[Prices]) -> Prices | None:
    """The market reference of a model from its active fixed-price listings: the median input and output
    prices, and the median cached-input price of those that state one (None when none does). None
    without listings."""
    if not listings:
        return None
    inputs = median(p.input for p in listings)
    outputs = median(p.output for p in listings)
    assert inputs is not None and outputs is not None
    return Prices(inputs, outputs, median(p.cached_input for p in listings if p.cached_input is not None))


def multiplier_prices(multiplier: Decimal, reference: Prices) -> Prices:
    """multiplier × reference, price by price; the cached price never above the input price."""
    if not multiplier.is_finite() or multiplier <= 0:
        raise ValueError("the multiplier must be a positive decimal")
    inp = _round(multiplier * reference.input)
    out = _round(multiplier * reference.output)
    cached = None if reference.cached_input is None else min(inp, _round(multiplier * reference.cached_input))
    return Prices(inp, out, cached)


def follow_target(
    others: Sequence[int], mode: FollowMode, offset_pct: Decimal, floor: int | None = None
) -> int | None:
    """The price auto-follow moves one price to: the lowest or median of the same price among the
    model's other active listings, × (1 + offset_pct / 100), rounded half up, never below `floor`.
    None when there is nothing to follow (mode `off`, or no other listing): the price stays."""
    if mode == "off" or not others:
        return None
    base = min(others) if mode == "lowest" else median(others)
    assert base is not None
    target = _round(Decimal(base) * (100 + offset_pct) / 100)
    return target if floor is None else max(target, min(floor, MAX_PRICE))


def scale_cached(cached: int | None, old_input: int, new_input: int) -> int | None:
    """A followed listing's cached-input price keeps its ratio to the input price (rounded down, never
    above the new input price)."""
    if cached is None:
        return None
    if old_input <= 0:
        return min(cached, new_input)
    return min(new_input, cached * new_input // old_input)


def follow_prices(
    current: Prices,
    others: Sequence[Prices],
    *,
    kind: str,
    mode: FollowMode,
    offset_pct: Decimal,
    floor: int | None,
) -> Prices | None:
    """Where auto-follow moves a listing: its input price (and, for kinds billed on output, its output
    price) each to its own `follow_target`; the cached price scaled with the input price. None when
    nothing is to follow; otherwise the new prices (equal to `current` when already there)."""
    target_in = follow_target([p.input for p in others], mode, offset_pct, floor)
    if target_in is None:
        return None
    target_out = current.output
    if kind in BILLS_OUTPUT:
        followed = follow_target([p.output for p in others], mode, offset_pct, floor)
        target_out = current.output if followed is None else followed
    return Prices(target_in, target_out, scale_cached(current.cached_input, current.input, target_in))


def billed_prices(kind: str, prices: Prices) -> list[int]:
    """The prices a trade at this listing may be billed at: the input price, and for chat (billed on
    output and cached prompt tokens too) the output price and the cached-input price when stated."""
    out = [prices.input]
    if prices.cached_input is not None and kind in BILLS_OUTPUT:
        out.append(prices.cached_input)
    if kind in BILLS_OUTPUT:
        out.append(prices.output)
    return out


def seller_payout(price: int, fee_bps: int) -> int:
    """What the seller earns per 1M units at `price`: the price less the platform fee, rounded down as
    the ledger rounds the seller's share (domain/money.py `trade_cost`; the reserve share stays the
    seller's)."""
    return price * (BPS - fee_bps) // BPS


def lowest_payout(kind: str, prices: Prices, fee_bps: int) -> int:
    """The lowest seller payout per 1M units any trade at this listing may earn, token by token."""
    return min(seller_payout(p, fee_bps) for p in billed_prices(kind, prices))


def meets_payout_floor(kind: str, prices: Prices, floor: int | None, fee_bps: int) -> bool:
    """True unless some billed price pays the seller less than `floor` per 1M units after the fee."""
    return floor is None or lowest_payout(kind, prices, fee_bps) >= floor


def exclusion(
    kind: str, prices: Prices, *, reference_missing: bool, payout_floor: int | None, fee_bps: int
) -> str | None:
    """Why a listing's pricing keeps it from being routed (None: it does not). Both are static: they
    change only with a write that moves the change sequence (a PATCH, a re-price, the fee setting)."""
    if reference_missing:
        return REFERENCE_MISSING
    if not meets_payout_floor(kind, prices, payout_floor, fee_bps):
        return PAYOUT_BELOW_FLOOR
    return None
