"""What the gateway tells the native market about the listing that served a trade
(gateway/chat.py `_record_health`): its TTFT and throughput are measured from that listing's own leg,
not from the request's start, so time spent on earlier attempts (a fallback, a lost hedge) is not
charged to it."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from support.listings import listing_info

from dragonfly.gateway.chat import Inference
from dragonfly.gateway.legs import Leg
from dragonfly.gateway.trade import TradeState, Usage, stream_throughput_tps

SECOND_NS = 1_000_000_000


class _Market:
    def __init__(self) -> None:
        self.results: list[tuple[Any, ...]] = []

    def record_result(self, *args: Any) -> bool:
        self.results.append(args)
        return True


class _Nothing:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def test_throughput_is_the_legs_generation_time() -> None:
    assert stream_throughput_tps(100, leg_ms=2_000, ttft_ms=1_000) == 100.0
    assert stream_throughput_tps(0, leg_ms=2_000, ttft_ms=1_000) is None  # nothing generated
    assert stream_throughput_tps(100, leg_ms=1_000, ttft_ms=1_000) is None  # no time to divide by
    assert stream_throughput_tps(100, leg_ms=2_000, ttft_ms=None) is None


def test_a_fallbacks_throughput_is_counted_from_its_own_leg() -> None:
    market = _Market()
    rt = SimpleNamespace(
        settings=SimpleNamespace(failpoint=None), router=SimpleNamespace(market=market), health=_Nothing()
    )
    inference = Inference(rt)  # type: ignore[arg-type]
    now = time.perf_counter_ns()
    # The request began 10 s ago (earlier attempts took 8 s); the leg that served it was sent 2 s ago,
    # its first byte came 1 s later and 100 tokens in the second after.
    trade = TradeState(
        request_id="r",
        key=None,  # type: ignore[arg-type]
        model="m",
        streamed=True,
        started_ns=now - 10 * SECOND_NS,
    )
    leg = Leg(listing_info("l2"), pre=None, hold=1, hold_id="r.1", t0=now - 2 * SECOND_NS)
    inference._take(trade, leg)
    trade.ttft_ms = 1_000
    inference._record_health(trade, True, Usage(completion=100))
    ((listing_id, ok, ttft, tps, _),) = market.results
    assert (listing_id, ok, ttft) == ("l2", True, 1_000.0)
    assert tps == pytest.approx(100.0, rel=0.05)  # not 100 / 9 s
