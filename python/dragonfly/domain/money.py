"""Money is integer micro-USD (1e-6 USD). Prices are integer micro-USD per 1M tokens.

The API speaks decimal strings (`"0.27"` USD per 1M tokens, `"0.000123"` USD); conversion happens only
here, with `Decimal`, never floats.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from dragonfly.record import record

MICROS_PER_USD = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per 1M tokens
BPS = 10_000
_MAX_PRICE_USD = Decimal(10_000)  # $10,000 per 1M tokens: anything above is a typo
_ONE_MICRO = Decimal("0.000001")


def parse_price(value: str | int | float) -> int:
    """`"0.27"` USD per 1M tokens -> 270000 micro-USD per 1M tokens. Raises ValueError on bad input."""
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("price must be a decimal number of USD per 1M tokens") from None
    if not dec.is_finite() or dec < 0:
        raise ValueError("price must be a non-negative decimal")
    # Bounds first, in exact comparisons: scaling `1e999999` overflowed the decimal context (a 500), and
    # scaling `1e-999999999` or 30 significant digits rounded silently (accepted as a price it is not).
    if dec > _MAX_PRICE_USD:
        raise ValueError("price is above the $10,000 per 1M tokens limit")
    whole_micros = dec.quantize(_ONE_MICRO, rounding=ROUND_DOWN)
    if whole_micros != dec:
        raise ValueError("price has more than 6 decimal places")
    return int(whole_micros * MICROS_PER_USD)


_MAX_AMOUNT_USD = Decimal(1_000_000)  # $1M in one amount is a typo


def parse_usd(value: str | int | float) -> int:
    """`"12.5"` USD -> 12500000 micro-USD: a positive amount of at most 6 decimal places and at most
    $1,000,000. Raises ValueError on anything else (bounds compared exactly, as in `parse_price`)."""
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("amount must be a decimal number of USD") from None
    if not dec.is_finite() or dec <= 0:
        raise ValueError("amount must be a positive decimal number of USD")
    if dec > _MAX_AMOUNT_USD:
        raise ValueError("amount is above the $1,000,000 limit")
    whole_micros = dec.quantize(_ONE_MICRO, rounding=ROUND_DOWN)
    if whole_micros != dec:
        raise ValueError("amount has more than 6 decimal places")
    return int(whole_micros * MICROS_PER_USD)


def usd(micros: int) -> str:
    """Micro-USD -> decimal USD string with 6 places (`"0.000123"`)."""
    return str((Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001")))


def price_str(micros_per_mtok: int) -> str:
    """Micro-USD per 1M tokens -> shortest exact decimal string (`270000` -> `"0.27"`)."""
    return format((Decimal(micros_per_mtok) / MICROS_PER_USD).normalize(), "f")


def cents_to_micros(cents: int) -> int:
    return cents * 10_000


def micros_to_cents_floor(micros: int) -> int:
    return micros // 10_000


@record
class TradeCost:
    """What one trade moves. charge = payout + reserve + fee + rounding, exactly."""

    charge: int  # debited from the buyer
    payout: int  # credited to the seller's locked earnings
    reserve: int  # credited to the seller's reserve
    fee: int  # platform fee
    rounding: int  # residue of integer division, to the platform rounding account


def trade_cost(
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    input_price: int,
    output_price: int,
    cached_input_price: int | None,
    fee_bps: int,
    reserve_bps: int,
) -> TradeCost:
    cached = max(0, min(cached_tokens, prompt_tokens)) if cached_input_price is not None else 0
    # Exact cost in micro-USD * 1e6 (price unit is per 1M tokens): no rounding until the end.
    numer = (
        (prompt_tokens - cached) * input_price
        + cached * (cached_input_price or 0)
        + completion_tokens * output_price
    )
    charge = -(-numer // TOKENS_PER_PRICE_UNIT)  # the buyer pays the ceiling
    seller_total = numer * (BPS - fee_bps) // (TOKENS_PER_PRICE_UNIT * BPS)
    fee = numer * fee_bps // (TOKENS_PER_PRICE_UNIT * BPS)
    reserve = seller_total * reserve_bps // BPS
    payout = seller_total - reserve
    rounding = charge - seller_total - fee
    return TradeCost(charge=charge, payout=payout, reserve=reserve, fee=fee, rounding=rounding)


def worst_case_hold(
    *, prompt_tokens: int, max_completion_tokens: int, input_price: int, output_price: int
) -> int:
    """The most a trade can cost at this listing: what admission reserves before the upstream call."""
    numer = prompt_tokens * input_price + max_completion_tokens * output_price
    return -(-numer // TOKENS_PER_PRICE_UNIT)
