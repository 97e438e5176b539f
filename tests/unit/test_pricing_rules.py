"""The pure market-pricing rules (domain/pricing.py): the median, the market reference, multiplier prices,
auto-follow targets with their offset and floor, and the payout-floor check against the platform fee."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain import pricing
from dragonfly.domain.money import parse_price, trade_cost
from dragonfly.domain.pricing import MAX_PRICE, Prices

USD = 1_000_000  # micro-USD per 1M tokens in one USD per 1M tokens


def test_median_of_odd_and_even_counts_and_of_nothing() -> None:
    assert pricing.median([]) is None
    assert pricing.median([7]) == 7
    assert pricing.median([3, 1, 2]) == 2
    assert pricing.median([4, 1, 3, 2]) == 2  # (2 + 3) // 2: half a micro-USD rounded down
    assert pricing.median([10, 20]) == 15


@given(st.lists(st.integers(min_value=0, max_value=MAX_PRICE), min_size=1, max_size=50))
def test_median_lies_between_the_extremes_and_splits_the_values(values: list[int]) -> None:
    m = pricing.median(values)
    assert m is not None and min(values) <= m <= max(values)
    assert sum(v < m for v in values) <= len(values) // 2
    assert sum(v > m for v in values) <= len(values) // 2


def test_market_reference_is_the_median_price_by_price() -> None:
    listings = [Prices(1 * USD, 4 * USD, None), Prices(2 * USD, 2 * USD, USD // 2), Prices(3 * USD, 3 * USD)]
    ref = pricing.market_reference(listings)
    assert ref == Prices(2 * USD, 3 * USD, USD // 2)  # cached: the median of those that state one
    assert pricing.market_reference([Prices(USD, USD)]) == Prices(USD, USD, None)
    assert pricing.market_reference([]) is None


def test_multiplier_prices_round_half_up_and_keep_cached_under_input() -> None:
    ref = Prices(270_000, 1_100_000, 70_000)
    assert pricing.multiplier_prices(Decimal("1.5"), ref) == Prices(405_000, 1_650_000, 105_000)
    # 1.5 and 0.5 micro-USD round half up
    assert pricing.multiplier_prices(Decimal("0.5"), Prices(3, 1, None)) == Prices(2, 1, None)
    assert pricing.multiplier_prices(Decimal("2"), Prices(USD, USD, None)).cached_input is None
    # Capped at the largest price the API accepts.
    assert pricing.multiplier_prices(Decimal(100), Prices(MAX_PRICE, 0)).input == MAX_PRICE
    with pytest.raises(ValueError):
        pricing.multiplier_prices(Decimal(0), ref)


@pytest.mark.parametrize(
    ("mode", "offset", "floor", "expected"),
    [
        ("lowest", "0", None, 1 * USD),
        ("median", "0", None, 2 * USD),
        ("lowest", "-10", None, 900_000),
        ("median", "25", None, 2_500_000),
        ("lowest", "-10", 950_000, 950_000),  # the floor holds
        ("lowest", "-10", 500_000, 900_000),  # a floor below the target does nothing
        ("off", "0", None, None),
    ],
)
def test_follow_target_with_offset_and_floor(
    mode: str, offset: str, floor: int | None, expected: int | None
) -> None:
    others = [3 * USD, 1 * USD, 2 * USD]
    assert pricing.follow_target(others, mode, Decimal(offset), floor) == expected  # type: ignore[arg-type]


def test_follow_target_without_others_keeps_the_price() -> None:
    assert pricing.follow_target([], "lowest", Decimal(0), 5) is None


@given(
    st.lists(st.integers(min_value=0, max_value=MAX_PRICE), min_size=1, max_size=20),
    st.sampled_from(["lowest", "median"]),
    st.decimals(min_value=-90, max_value=1000, places=2),
    st.one_of(st.none(), st.integers(min_value=0, max_value=MAX_PRICE)),
)
def test_follow_target_is_never_below_its_floor(
    others: list[int], mode: str, offset: Decimal, floor: int | None
) -> None:
    target = pricing.follow_target(others, mode, offset, floor)  # type: ignore[arg-type]
    assert target is not None and 0 <= target <= MAX_PRICE
    if floor is not None:
        assert target >= floor


def test_follow_prices_follows_input_and_chat_output_and_scales_cached() -> None:
    current = Prices(2 * USD, 8 * USD, USD // 2)
    others = [Prices(1 * USD, 4 * USD), Prices(3 * USD, 6 * USD)]
    chat = pricing.follow_prices(
        current, others, kind="chat", mode="lowest", offset_pct=Decimal(0), floor=None
    )
    assert chat == Prices(1 * USD, 4 * USD, USD // 4)  # cached keeps its quarter of the input price
    # Speech and embeddings bill their input only: the output price is neither followed nor floored.
    speech = pricing.follow_prices(
        current, others, kind="speech", mode="median", offset_pct=Decimal(0), floor=None
    )
    assert speech == Prices(2 * USD, 8 * USD, USD // 2)
    floored = pricing.follow_prices(
        current, others, kind="chat", mode="lowest", offset_pct=Decimal(-50), floor=USD
    )
    assert floored == Prices(USD, 2 * USD, USD // 4)
    assert (
        pricing.follow_prices(current, [], kind="chat", mode="lowest", offset_pct=Decimal(0), floor=None)
        is None
    )


def test_seller_payout_is_the_price_less_the_fee_as_the_ledger_splits_it() -> None:
    assert pricing.seller_payout(USD, 1_000) == 900_000
    assert pricing.seller_payout(USD, 0) == USD
    # One million tokens at the price: the seller's share (payout + reserve) is what the ledger posts.
    for price in (1, 333_333, USD, 7 * USD + 1):
        cost = trade_cost(
            prompt_tokens=1_000_000,
            completion_tokens=0,
            cached_tokens=0,
            input_price=price,
            output_price=0,
            cached_input_price=None,
            fee_bps=1_000,
            reserve_bps=500,
        )
        assert cost.payout + cost.reserve == pricing.seller_payout(price, 1_000)


def test_payout_floor_holds_against_every_billed_price() -> None:
    floor = parse_price("0.9")
    assert pricing.meets_payout_floor("chat", Prices(USD, 2 * USD), floor, 1_000)  # 0.9 after a 10 % fee
    assert not pricing.meets_payout_floor("chat", Prices(USD, 2 * USD), floor + 1, 1_000)
    assert pricing.meets_payout_floor("chat", Prices(USD, 2 * USD), None, 1_000)
    # A chat trade may be billed at the cached price: it counts.
    assert not pricing.meets_payout_floor("chat", Prices(2 * USD, 2 * USD, USD // 2), floor, 1_000)
    # Speech bills its input only: a zero output price does not break the floor.
    assert pricing.meets_payout_floor("speech", Prices(2 * USD, 0), floor, 1_000)
    assert pricing.lowest_payout("chat", Prices(3 * USD, 2 * USD), 2_000) == 1_600_000


def test_exclusion_names_the_pricing_reason() -> None:
    ok = Prices(USD, USD)
    assert pricing.exclusion("chat", ok, reference_missing=False, payout_floor=None, fee_bps=1_000) is None
    assert (
        pricing.exclusion("chat", ok, reference_missing=True, payout_floor=None, fee_bps=1_000)
        == pricing.REFERENCE_MISSING
    )
    assert (
        pricing.exclusion("chat", ok, reference_missing=False, payout_floor=USD, fee_bps=1_000)
        == pricing.PAYOUT_BELOW_FLOOR
    )
    assert pricing.exclusion("chat", ok, reference_missing=False, payout_floor=USD, fee_bps=0) is None
