"""The health verdict of a listing or provider, the median TTFT from the middle values, and the window
parameter (domain/market_health.py)."""

from __future__ import annotations

import pytest

from dragonfly.domain.market_health import TradeStats, health_status, window_from


@pytest.mark.parametrize(
    ("calls", "completed", "trouble", "verdict"),
    [
        (20, 19, False, "ok"),  # exactly 95 % of the minimum sample
        (20, 18, False, "degraded"),  # 90 %
        (200, 189, False, "degraded"),  # 94.5 %
        (19, 19, False, "unknown"),  # too little traffic, however good
        (0, 0, False, "unknown"),
        (0, 0, True, "degraded"),  # a contract in trouble, whatever the traffic
        (100, 100, True, "degraded"),
    ],
)
def test_health_verdict(calls: int, completed: int, trouble: bool, verdict: str) -> None:
    assert health_status(TradeStats(calls=calls, completed=completed), contract_trouble=trouble) == verdict


def test_success_rate_and_median_are_null_without_data() -> None:
    empty = TradeStats()
    assert empty.success_rate is None and empty.median_ttft_ms is None
    assert TradeStats(calls=3, completed=0).success_rate == 0.0


@pytest.mark.parametrize(
    ("mid_sum", "mid_count", "median"),
    [(41, 1, 41), (141, 2, 70.5), (50, 2, 25), (0, 1, 0)],
)
def test_median_is_the_middle_value_or_the_mean_of_the_two(
    mid_sum: int, mid_count: int, median: float
) -> None:
    got = TradeStats(calls=1, completed=1, ttft_mid_sum=mid_sum, ttft_mid_count=mid_count).median_ttft_ms
    assert got == median and type(got) is type(median)


def test_window_bounds() -> None:
    assert window_from(None) == 3600
    assert window_from("60") == 60 and window_from("86400") == 86400
    for bad in ("59", "86401", "0", "-60", "1e3", "60.0", "", " ", "٦٠", "²"):
        with pytest.raises(ValueError, match="window_s"):
            window_from(bad)
