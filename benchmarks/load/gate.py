"""The CI latency gate (`make bench-gate`): Dragonfly embedded against the fake seller directly, same run.

A fixed moderate rate (default 200 requests/s of non-streamed chat from 20 Locust users at constant
throughput) runs in short segments alternating direct, Dragonfly, direct, Dragonfly… The merged
histograms give each side's p50/p99; the gate fails when Dragonfly's *added* latency (its percentile minus
direct's, both from this run) or its error rate crosses a threshold. Absolute times never decide alone.

Thresholds (calibrated on the shared 2-core development machine, see benchmarks/README.md §Load): the
CPU criterion — Dragonfly's CPU per request over the seller's, same run, far steadier than latency — sits
at ~2× its value on a quiet machine (3.2–3.8), so a 2× regression of the gateway's cost trips it; the latency
limits sit at ~3× (p50) the quiet values, loose enough for a busy neighbour. Every limit can be
overridden with BENCH_GATE_* environment variables.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import services, targets
from benchmarks.load.harness import LoadRun, run_locust
from benchmarks.load.probe import probe


@dataclass(frozen=True)
class Thresholds:
    added_p50_ms: float = float(os.environ.get("BENCH_GATE_ADDED_P50_MS", "6.0"))
    added_p99_ms: float = float(os.environ.get("BENCH_GATE_ADDED_P99_MS", "150.0"))
    error_rate: float = float(os.environ.get("BENCH_GATE_ERROR_RATE", "0.005"))
    # CPU per request of the serve tree over the seller's, same run: far less noisy than latency here.
    cpu_x_direct: float = float(os.environ.get("BENCH_GATE_CPU_X_DIRECT", "7.0"))
    # The gateway must at least keep up with the offered rate (a stall shows up here first).
    min_rps_ratio: float = 0.75


def gate(*, segment_s: float, segments: int, rate: float, users: int, out_dir: Path) -> bool:
    t_start = time.monotonic()
    services.raise_fd_limit()
    run_dir = out_dir / f"gate-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    th = Thresholds()
    seller = targets.start_fake_seller(log_dir)
    df: targets.Target | None = None
    try:
        df = targets.start_embedded(log_dir, seller)
        setup_s = time.monotonic() - t_start
        # Warm both paths (connections, snapshot, JIT-less caches) outside the measured window.
        for t in (seller, df):
            probe(t.origin, t.api_key, t.models["chat"], count=300, warmup=50, max_s=5)
        per_user = rate / users
        merged: dict[str, LoadRun] = {}
        for i in range(segments):
            for t in (seller, df):
                r = run_locust(
                    t,
                    "chat",
                    users=users,
                    duration_s=segment_s,
                    out_dir=run_dir,
                    tag=f"s{i}-{t.name}",
                    rate=per_user,
                    seller_roots=[] if t is seller else seller.roots,
                )
                if t.name in merged:
                    merged[t.name].add(r)
                else:
                    merged[t.name] = r
        d, g = merged["direct"].summary(), merged[df.name].summary()
        verdict = _judge(d, g, rate, th)
        report: dict[str, Any] = {
            "direct": d,
            "dragonfly": g,
            "added_p50_ms": g["p50_ms"] - d["p50_ms"],
            "added_p99_ms": g["p99_ms"] - d["p99_ms"],
            "cpu_x_direct": g["cpu_us_per_req"] / d["cpu_us_per_req"] if d["cpu_us_per_req"] else None,
            "thresholds": th.__dict__,
            "failures": verdict,
            "setup_s": setup_s,
            "total_s": time.monotonic() - t_start,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
        (run_dir / "gate.json").write_text(json.dumps(report, indent=2, default=str))
        print(_render(report, rate, segments, segment_s))
        return not verdict
    finally:
        if df is not None:
            df.stop()
        seller.stop()


def _judge(d: dict[str, Any], g: dict[str, Any], rate: float, th: Thresholds) -> list[str]:
    out = []
    if not g["requests"] or not d["requests"]:
        return ["no requests were measured (see the gate's logs)"]
    if g.get("locust_failed") or d.get("locust_failed"):
        out.append(f"the load generator failed: {g.get('locust_failed') or d.get('locust_failed')}")
    added50, added99 = g["p50_ms"] - d["p50_ms"], g["p99_ms"] - d["p99_ms"]
    if added50 > th.added_p50_ms:
        out.append(f"Dragonfly adds {added50:.2f} ms at p50 (limit {th.added_p50_ms} ms)")
    if added99 > th.added_p99_ms:
        out.append(f"Dragonfly adds {added99:.2f} ms at p99 (limit {th.added_p99_ms} ms)")
    if g["error_rate"] > th.error_rate:
        out.append(
            f"Dragonfly error rate {g['error_rate']:.2%} (limit {th.error_rate:.2%}): {g.get('error_kinds')}"
        )
    if d["cpu_us_per_req"] and g["cpu_us_per_req"] / d["cpu_us_per_req"] > th.cpu_x_direct:
        ratio = g["cpu_us_per_req"] / d["cpu_us_per_req"]
        out.append(f"Dragonfly costs {ratio:.1f}× the seller's CPU per request (limit {th.cpu_x_direct}×)")
    if d["rps"] and g["rps"] < th.min_rps_ratio * d["rps"]:
        out.append(f"Dragonfly kept up with only {g['rps']:.0f} of {d['rps']:.0f} requests/s")
    return out


def _render(r: dict[str, Any], rate: float, segments: int, segment_s: float) -> str:
    d, g = r["direct"], r["dragonfly"]
    lines = [
        f"bench-gate: {rate:.0f} req/s non-streamed chat, {segments}×{segment_s:.0f}s per side, interleaved "
        f"(setup {r['setup_s']:.0f}s, total {r['total_s']:.0f}s, load average {' '.join(r['loadavg'])})",
        f"  direct     rps={d['rps']:7.1f} p50={d['p50_ms']:6.2f} ms p99={d['p99_ms']:6.2f} ms "
        f"errors={d['errors']}/{d['requests']} cpu={d['cpu_us_per_req']:.0f} µs/req",
        f"  dragonfly  rps={g['rps']:7.1f} p50={g['p50_ms']:6.2f} ms p99={g['p99_ms']:6.2f} ms "
        f"errors={g['errors']}/{g['requests']} cpu={g['cpu_us_per_req']:.0f} µs/req",
        f"  added      p50={r['added_p50_ms']:+.2f} ms (limit {r['thresholds']['added_p50_ms']}) "
        f"p99={r['added_p99_ms']:+.2f} ms (limit {r['thresholds']['added_p99_ms']}) "
        f"CPU × direct={r['cpu_x_direct'] or float('nan'):.1f} (limit {r['thresholds']['cpu_x_direct']})",
    ]
    if r["failures"]:
        lines += ["FAIL: " + f for f in r["failures"]]
    else:
        lines.append("PASS")
    return "\n".join(lines)
