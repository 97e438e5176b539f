"""The performance targets the benchmarks track (issue 19, "Performance round 2"), defined once.

`summary.py` checks a run against them, `plot.py` draws them as target lines and benchmarks/README.md prints
the table they make. Every ratio is to a floor measured in the same run: the **relay** (`bare_relay.py`,
Granian + the seller client and no Dragonfly logic) unless the target names another (the embedded
server for PostgreSQL + Redis latency, LiteLLM for throughput, the seller reached directly for the
2,000-stream stretch). This module is data only (no servers are started here: that is `targets.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

# How a target compares the Dragonfly figure with its floor:
RATIO_MAX = "ratio_max"  # dragonfly / floor <= limit
RATIO_MIN = "ratio_min"  # dragonfly / floor >= limit
EXCESS_MAX = "excess_max"  # dragonfly - floor <= limit (same unit)
VALUE_MAX = "value_max"  # dragonfly <= limit (the floor is shown for comparison only)
VALUE_MIN = "value_min"  # dragonfly >= limit

# Where a figure comes from: the side-by-side load run (`run`, or an `ab` run's relay and head) or the
# many-streams run (`streams`).
RUN = "run"
STREAMS = "streams"


@dataclass(frozen=True)
class Goal:
    key: str  # stable identifier: the row's key in results.json's "summary"
    figure: str  # what is measured, as the table names it
    subject: str  # the Dragonfly target measured: "embedded" or "pg-redis"
    floor: str  # the reference target, measured in the same run
    kind: str  # RATIO_MAX, RATIO_MIN, EXCESS_MAX, VALUE_MAX or VALUE_MIN
    limit: float
    unit: str  # of the floor and Dragonfly values: "µs", "ms", "req/s", "%", "KiB"
    target: str  # the target as the issue words it
    source: str = RUN


GOALS: tuple[Goal, ...] = (
    Goal(
        "chat_cpu",
        "non-streamed chat, CPU per request, embedded",
        "embedded",
        "relay",
        RATIO_MAX,
        1.6,
        "µs",
        "≤ 1.6× relay",
    ),
    Goal(
        "chat_cpu_pg_redis",
        "non-streamed chat, CPU per request, PostgreSQL + Redis (whole process tree)",
        "pg-redis",
        "relay",
        RATIO_MAX,
        2.5,
        "µs",
        "≤ 2.5× relay",
    ),
    Goal(
        "stream_cpu",
        "streamed chat (20 chunks), CPU per stream, embedded",
        "embedded",
        "relay",
        RATIO_MAX,
        1.6,
        "µs",
        "≤ 1.6× relay",
    ),
    Goal(
        "stream_ttft_added",
        "saturated streamed TTFT p50 added over direct (16 connections), embedded",
        "embedded",
        "relay",
        RATIO_MAX,
        1.5,
        "ms",
        "≤ 1.5× relay",
    ),
    Goal(
        "unloaded_p50",
        "unloaded added latency p50 (concurrency 1), embedded",
        "embedded",
        "relay",
        EXCESS_MAX,
        100.0,
        "µs",
        "≤ relay + 0.1 ms",
    ),
    Goal(
        "unloaded_p99",
        "unloaded added latency p99 (concurrency 1), embedded",
        "embedded",
        "relay",
        EXCESS_MAX,
        500.0,
        "µs",
        "≤ relay + 0.5 ms",
    ),
    Goal(
        "unloaded_p50_pg_redis",
        "PostgreSQL + Redis unloaded added latency p50 (concurrency 1)",
        "pg-redis",
        "embedded",
        RATIO_MAX,
        2.0,
        "µs",
        "≤ 2× embedded",
    ),
    Goal(
        "rps_vs_litellm",
        "non-streamed chat RPS (64 connections), embedded vs LiteLLM",
        "embedded",
        "litellm",
        RATIO_MIN,
        50.0,
        "req/s",
        "≥ 50× LiteLLM",
    ),
    Goal(
        "streams_within_10pct",
        "2,000 concurrent streams (50 chunks × 50 ms): share within 10 % of direct's median duration",
        "embedded",
        "direct",
        VALUE_MIN,
        95.0,
        "%",
        "≥ 95 %",
        STREAMS,
    ),
    Goal(
        "streams_p99_stretch",
        "2,000 concurrent streams: p99 stretch over direct's median duration",
        "embedded",
        "direct",
        VALUE_MAX,
        10.0,
        "%",
        "p99 ≤ +10 %",
        STREAMS,
    ),
    Goal(
        "memory_per_stream",
        "memory per open stream (RSS with all streams open), embedded",
        "embedded",
        "relay",
        VALUE_MAX,
        64.0,
        "KiB",
        "≤ 64 KiB",
        STREAMS,
    ),
)

BY_KEY = {g.key: g for g in GOALS}


def met(goal: Goal, compared: float | None) -> bool | None:
    """Whether the goal is met; `compared` is what its kind compares with the limit: the ratio (dragonfly /
    floor, RATIO_*), the excess (dragonfly − floor, EXCESS_MAX) or Dragonfly's value (VALUE_*). None
    (nothing to compare) cannot be told."""
    if compared is None or compared != compared:  # None or NaN
        return None
    if goal.kind in (RATIO_MAX, EXCESS_MAX, VALUE_MAX):
        return compared <= goal.limit
    return compared >= goal.limit
