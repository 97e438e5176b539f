"""What listing-health bookkeeping and the hedging check cost per request, when no hedge is configured
and nothing is failing (issue 14: "add no measurable CPU per request when unused"), against baselines
timed in the same run: an empty call with the same arguments.

Per request the data plane makes, on a completed trade: `HealthTracker.finished` (gateway/health.py:
the listing's streak and success-rate window, `domain/health.LiveHealth.observe`) and, before the first
attempt, `hedge_after_ms is not None and plan.max_attempts > 1` (gateway/chat.py `_attempts`). A failed
attempt also pays `HealthTracker.failed`, which on a healthy market sums the model's other listings'
windows for the verdict (timed with 8 listings of the model, every one with a full window).

Run: `python benchmarks/micro/bench_health.py`. Relate the µs to a request's whole CPU in the same
machine's load run (`python -m benchmarks.load ab …`, 300–330 µs per non-streamed chat request on the
2-core VM, 2026-12-05).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable

from dragonfly.domain.health import HealthPolicy
from dragonfly.domain.trade import AttemptPlan
from dragonfly.gateway.health import HealthTracker
from dragonfly.gateway.snapshot import ListingInfo, Snapshot

N = 200_000
ROUNDS = 5


def best_us(fn: Callable[[], None], n: int = N) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    return best


def _listing(i: int) -> ListingInfo:
    return ListingInfo(
        id=f"01a242d5-9e0a-72b1-bb22-6e0981de3c{i:02d}",
        seller_id="s",
        model="demo/echo-1",
        upstream_model="echo-1",
        kind="chat",
        provider="custom",
        base_url="http://127.0.0.1:1/v1",
        api_key="k",
        input_price=1,
        output_price=2,
        cached_input_price=None,
        rpm_cap=None,
        concurrency_cap=None,
        context_length=None,
        status="active",
        contract_status="active",
    )


async def main() -> None:
    listings = [_listing(i) for i in range(8)]
    listing = listings[0]
    snap = Snapshot(1, {}, {}, {}, {listing.model: tuple(listings)}, {x.id: x for x in listings})

    async def reload() -> None:
        return None

    # rate_margin 1.0: the success-rate rule computes its verdict (the cost measured) but never degrades,
    # so the steady path is timed rather than a queued transition's early return.
    tracker = HealthTracker(HealthPolicy(rate_margin=1.0), lambda: snap, lambda: None, reload)
    for other in listings:  # full windows everywhere: the failure path's verdict reads them all
        for _ in range(100):
            tracker.finished(other, True, "stop")
    plan = AttemptPlan(max_attempts=3, retry_on=frozenset({"5xx", "timeout"}))
    hedge_after_ms: int | None = None

    def empty(lst: ListingInfo, ok: bool, reason: str | None) -> None:
        return None

    def baseline() -> None:
        empty(listing, True, "stop")

    def finished() -> None:
        tracker.finished(listing, True, "stop")

    def failed_then_ok() -> None:
        # A failure then a success, so the streak never reaches the degrade threshold (which would
        # queue a transition): the steady cost of the failure path on a healthy market.
        tracker.failed(listing, "http_503")
        tracker.finished(listing, True, "stop")

    def hedge_check() -> None:
        if hedge_after_ms is not None and plan.max_attempts > 1:
            raise AssertionError("no hedge configured")

    cases = [
        ("empty call, same arguments (baseline)", baseline),
        ("hedging check, no hedge configured", hedge_check),
        ("HealthTracker.finished (completed trade)", finished),
        ("HealthTracker.failed + finished (a failed attempt, then a completed one)", failed_then_ok),
    ]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; best of {ROUNDS} rounds of {N:,} calls"
    )
    base = best_us(baseline)
    print("| per request | µs | above the empty call, µs |")
    print("|---|---:|---:|")
    for name, fn in cases:
        us = best_us(fn)
        print(f"| {name} | {us:.3f} | {us - base:+.3f} |")
    if tracker._pending:
        sys.exit("a health transition was queued: the benchmark measured the wrong path")


if __name__ == "__main__":
    asyncio.run(main())
