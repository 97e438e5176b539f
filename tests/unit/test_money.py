"""Money conversions: decimal strings in the API, integer micro-USD inside; no floats, no lost micros."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain.money import (
    cents_to_micros,
    micros_to_cents_floor,
    parse_price,
    price_str,
    trade_cost,
    usd,
    worst_case_hold,
)


@pytest.mark.parametrize(
    ("text", "micros"),
    [("0.27", 270_000), ("1", 1_000_000), ("0.000001", 1), ("15.5", 15_500_000), (2, 2_000_000), ("0", 0)],
)
def test_parse_price(text: str | int, micros: int) -> None:
    assert parse_price(text) == micros


@pytest.mark.parametrize("bad", ["-1", "abc", "0.0000001", "NaN", "Infinity", "10000.000001", ""])
def test_parse_price_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_price(bad)


@given(st.integers(min_value=0, max_value=10_000 * 1_000_000))
def test_price_string_round_trips(micros: int) -> None:
    assert parse_price(price_str(micros)) == micros


def test_rendering() -> None:
    assert price_str(270_000) == "0.27" and price_str(1_000_000) == "1" and price_str(0) == "0"
    assert usd(100_000) == "0.100000" and usd(-5) == "-0.000005"
    assert cents_to_micros(250) == 2_500_000 and micros_to_cents_floor(32_345) == 3
    assert micros_to_cents_floor(9_999) == 0


@given(
    prompt=st.integers(0, 2_000_000),
    completion=st.integers(0, 200_000),
    cached=st.integers(0, 2_000_000),
    input_price=st.integers(0, 100_000_000),
    output_price=st.integers(0, 100_000_000),
    cached_price=st.one_of(st.none(), st.integers(0, 100_000_000)),
    fee_bps=st.integers(0, 10_000),
    reserve_bps=st.integers(0, 10_000),
)
def test_trade_cost_splits_the_charge_exactly(
    prompt: int,
    completion: int,
    cached: int,
    input_price: int,
    output_price: int,
    cached_price: int | None,
    fee_bps: int,
    reserve_bps: int,
) -> None:
    cost = trade_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        input_price=input_price,
        output_price=output_price,
        cached_input_price=cached_price,
        fee_bps=fee_bps,
        reserve_bps=reserve_bps,
    )
    assert cost.charge == cost.payout + cost.reserve + cost.fee + cost.rounding
    assert min(cost.payout, cost.reserve, cost.fee, cost.rounding) >= 0
    if cached_price is None or cached_price <= input_price:
        hold = worst_case_hold(
            prompt_tokens=prompt,
            max_completion_tokens=completion,
            input_price=input_price,
            output_price=output_price,
        )
        assert cost.charge <= hold


def test_trade_cost_example() -> None:
    cost = trade_cost(
        prompt_tokens=1_000,
        completion_tokens=500,
        cached_tokens=0,
        input_price=1_000_000,
        output_price=2_000_000,
        cached_input_price=None,
        fee_bps=1_000,
        reserve_bps=500,
    )
    assert cost.charge == 2_000  # $0.002
    assert (cost.fee, cost.reserve, cost.payout, cost.rounding) == (200, 90, 1_710, 0)
