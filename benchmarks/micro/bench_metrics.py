"""What the data plane's metrics and request log cost per request (gateway/telemetry.py), against baselines
timed in the same run: an empty call with the same arguments, and `RoutingActivity.record` (the sibling
call in `Inference._trade`'s `finally`, on its usual path: a decision sampled away).

Per request the hot path makes: `Telemetry.trade_done` (a completed stream: trade counter, duration, TTFT
and one upstream attempt), the ranking histogram (two clock reads and an observe) and the route's
request counter (`GatewayApp.__rsgi__`). `trade_done` is timed with the request log line off (log level
WARNING) and on (one JSON line to /dev/null: written straight to the root's JSON handler, as a worker
configured by `dragonfly.logfmt.setup` does, and through the logging module for comparison).
"Flush" is `per request` plus adding its values to prometheus_client's (done once a second per worker,
for every label combination that changed, not per request).

Run: `python benchmarks/micro/bench_metrics.py` — it times prometheus_client's multiprocess mode (what
`dragonfly serve` runs: values in memory-mapped files, `PROMETHEUS_MULTIPROC_DIR`) and its in-memory
mode (no directory) in two child processes, since the mode is fixed when prometheus_client is imported.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

N = 200_000
ROUNDS = 5
MODE_ENV = "BENCH_METRICS_MODE"


def best_us(fn: Callable[[], None], n: int = N) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    return best


def run_mode() -> None:
    # Imported here: prometheus_client reads PROMETHEUS_MULTIPROC_DIR once, at import.
    from dragonfly import logfmt
    from dragonfly.config import Settings
    from dragonfly.gateway.activity import RoutingActivity
    from dragonfly.gateway.snapshot import KeyInfo, ListingInfo, Snapshot
    from dragonfly.gateway.telemetry import Telemetry, request_log
    from dragonfly.gateway.trade import Attempt, TradeState

    listing = ListingInfo(
        id="01a242d5-9e0a-72b1-bb22-6e0981de3cbc",
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
    snap = Snapshot(1, {}, {}, {}, {listing.model: (listing,)}, {listing.id: listing})
    key = KeyInfo("01a242d5-9f6c-7462-9119-b4fe24883021", "acct", None, None, (), ())
    settings = Settings(metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    telemetry = Telemetry(settings, lambda: snap, lambda: None, lambda: None)
    trade = TradeState(
        request_id="01a242d5-c30e-7628-8d58-620757a1de58", key=key, model="demo/echo-1", streamed=True
    )
    trade.listing, trade.ttft_ms = listing, 3
    trade.attempts.append(Attempt(listing.id, "custom", "ok", 2))

    class _Explain:
        def explain(self, model: str, profile_id: str, now_ms: int, seed: int) -> Any:
            return []

    activity = RoutingActivity(_Explain(), lambda: None, interval_s=3600.0)
    http = telemetry.http_child("/v1/chat/completions")
    rank = telemetry.rank_time

    def noop(kind: str, trade: TradeState, model: str, outcome: str, code: str | None) -> None:
        return None

    def empty() -> None:
        noop("chat", trade, "demo/echo-1", "completed", None)

    def record() -> None:
        activity.record(
            model="demo/echo-1",
            profile_id="builtin:balanced",
            strategy="balanced",
            now_ms=0,
            seed=1,
            chosen_listing_id=listing.id,
            outcome="completed",
            error_code=None,
            trade_id=trade.request_id,
        )

    def done() -> None:
        telemetry.trade_done("chat", trade, "demo/echo-1", "completed", None)

    def ranked() -> None:
        t = time.perf_counter_ns()
        rank.observe((time.perf_counter_ns() - t) / 1e9)

    def per_request() -> None:
        done()
        ranked()
        http.inc()

    def flushed() -> None:
        per_request()
        telemetry.flush()

    request_log.setLevel(logging.WARNING)
    figures = {
        "empty call (baseline)": best_us(empty),
        "activity.record (baseline)": best_us(record),
        "trade_done, log off": best_us(done),
        "ranking histogram": best_us(ranked),
        "route counter": best_us(http.inc),
        "per request, log off": best_us(per_request),
        "flush of one request's values": best_us(flushed, N // 4),
    }
    with open(os.devnull, "w") as sink:
        # As `dragonfly.logfmt.setup` leaves a data-plane worker: one JSON handler on the root logger.
        root = logging.getLogger()
        saved = root.handlers[:]
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logfmt.formatter("json"))
        root.handlers[:] = [handler]
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        request_log.setLevel(logging.INFO)
        figures["trade_done, JSON log line"] = best_us(done, N // 4)
        figures["per request, JSON log line"] = best_us(per_request, N // 4)
        root.addFilter(lambda r: True)  # any other arrangement: the line goes through logging
        figures["trade_done, JSON log line through logging"] = best_us(done, N // 4)
        root.filters.clear()
        root.handlers[:] = saved
    assert telemetry.failures == 0
    mode = "multiprocess (files)" if telemetry.dir else "in-memory"
    print(f"\n{mode}:")
    print("| call | µs per request |\n|---|---:|")
    for name, us in figures.items():
        print(f"| {name} | {us:.2f} |")


def main() -> None:
    if os.environ.get(MODE_ENV):
        run_mode()
        return
    print(f"python {sys.version.split()[0]} | {platform.platform()} | cpus={os.cpu_count()}")
    print(f"best of {ROUNDS} rounds of {N:,} calls ({N // 4:,} with the log line)")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as d:
        base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        for extra in ({"PROMETHEUS_MULTIPROC_DIR": d}, {}):
            env = {**base, MODE_ENV: "1", **extra}
            subprocess.run([sys.executable, __file__], env=env, check=True)


if __name__ == "__main__":
    main()
