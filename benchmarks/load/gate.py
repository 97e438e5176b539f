"""The CI gate (`make bench-gate`): Dragonfly embedded against the fake seller directly and against the
relay floor (Granian + the seller client, no gateway logic: `bare_relay.py`), same run.

A fixed moderate rate (default 200 requests/s of non-streamed chat from 20 Locust users at constant
throughput) runs in short segments alternating direct, relay, Dragonfly, direct, relay, Dragonfly… The
merged histograms give each side's p50/p99; the gate fails when Dragonfly's *added* latency (its percentile
minus direct's, both from this run), its error rate, or its CPU per request over the relay's crosses a
threshold. Absolute times never decide alone.

The CPU criterion is the one issue 19's targets are stated in: Dragonfly's CPU per request over the relay's
in the same run (both are one Granian worker on the same seller, so the machine's speed cancels). Five
calibration runs on af169fb measured 1.95–2.21, the six fresh-clone CI runs of the two sessions before
2.13–2.73: the limit, 3.1, is 1.14× the worst of them — a change that adds a seventh to the request's CPU
(about a third of Dragonfly's own part, which is the ratio minus the relay's 1) trips it.
The spread between runs is ±7 % on a busy day, so a run that fails is run once more and the gate fails
only when both do (`gate_confirmed`): a regression fails twice, a noisy minute rarely does.
Added latency is judged against the relay's added latency in the same run, with the old absolute limits
as a floor: limit = max(4 ms, 4 × the relay's added p50) at p50, max(100 ms, 4 × the relay's) at p99.
Calibrated: Dragonfly's added p50 over the relay's was 2.1–3.0× in the five quiet runs (relay +0.4–0.6 ms)
AND in a fresh-clone CI run on a VM slowed ~2× by a neighbour (direct's CPU per request 768 µs against 393;
relay +3.9–4.8 ms, Dragonfly +9.2–10.2 ms), where the absolute 4 ms alone failed the gate on the machine,
not on the code. On a quiet machine the limits are the absolute ones (~3× and ~7× the quiet values). Every
limit can be overridden with BENCH_GATE_* environment variables.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import services, targets
from benchmarks.load.harness import LoadRun, run_locust
from benchmarks.load.probe import probe


@dataclass(frozen=True)
class Thresholds:
    added_p50_ms: float = float(os.environ.get("BENCH_GATE_ADDED_P50_MS", "4.0"))
    added_p99_ms: float = float(os.environ.get("BENCH_GATE_ADDED_P99_MS", "100.0"))
    # ... or this many times the relay's own added latency in the same run, whichever is larger.
    added_x_relay: float = float(os.environ.get("BENCH_GATE_ADDED_X_RELAY", "4.0"))
    error_rate: float = float(os.environ.get("BENCH_GATE_ERROR_RATE", "0.005"))
    # CPU per request of the serve tree over the relay's, same run (calibrated: benchmarks/README.md).
    cpu_x_relay: float = float(os.environ.get("BENCH_GATE_CPU_X_RELAY", "3.1"))
    # The gateway must at least keep up with the offered rate (a stall shows up here first).
    min_rps_ratio: float = 0.75


def gate_confirmed(once: Callable[[], bool]) -> bool:
    """The gate as CI runs it: `once` (one whole gate run) is run once more when it fails, and only a
    second failure fails."""
    if once():
        return True
    print("bench-gate: failed once; running it again to tell a regression from a noisy minute", flush=True)
    return once()


def gate(*, segment_s: float, segments: int, rate: float, users: int, out_dir: Path) -> bool:
    t_start = time.monotonic()
    services.raise_fd_limit()
    run_dir = out_dir / f"gate-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    th = Thresholds()
    seller = targets.start_fake_seller(log_dir)
    relay: targets.Target | None = None
    df: targets.Target | None = None
    try:
        relay = targets.start_bare_relay(log_dir, seller)
        df = targets.start_embedded(log_dir, seller)
        setup_s = time.monotonic() - t_start
        sides = (seller, relay, df)
        # Warm every path (connections, snapshot, JIT-less caches) outside the measured window.
        for t in sides:
            probe(t.origin, t.api_key, t.models["chat"], count=300, warmup=50, max_s=5)
        per_user = rate / users
        merged: dict[str, LoadRun] = {}
        for i in range(segments):
            for t in sides:
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
        d, rl, g = merged["direct"].summary(), merged["relay"].summary(), merged[df.name].summary()
        verdict = _judge(d, rl, g, th)
        limit50, limit99 = latency_limits(d, rl, th)
        report: dict[str, Any] = {
            "direct": d,
            "relay": rl,
            "dragonfly": g,
            "added_p50_ms": g["p50_ms"] - d["p50_ms"],
            "added_p99_ms": g["p99_ms"] - d["p99_ms"],
            "relay_added_p50_ms": rl["p50_ms"] - d["p50_ms"],
            "relay_added_p99_ms": rl["p99_ms"] - d["p99_ms"],
            "limit_p50_ms": limit50,
            "limit_p99_ms": limit99,
            "cpu_x_relay": _ratio(g["cpu_us_per_req"], rl["cpu_us_per_req"]),
            "cpu_x_direct": _ratio(g["cpu_us_per_req"], d["cpu_us_per_req"]),
            "relay_cpu_x_direct": _ratio(rl["cpu_us_per_req"], d["cpu_us_per_req"]),
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
        for side in (df, relay, seller):
            if side is not None:
                side.stop()


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def latency_limits(d: dict[str, Any], rl: dict[str, Any], th: Thresholds) -> tuple[float, float]:
    """(p50, p99) limits on Dragonfly's added latency: the absolute ones, or `added_x_relay` times what the
    relay added over direct in the same run when that is larger (a slowed machine slows the relay too)."""
    relay50 = max(0.0, rl["p50_ms"] - d["p50_ms"])
    relay99 = max(0.0, rl["p99_ms"] - d["p99_ms"])
    return max(th.added_p50_ms, th.added_x_relay * relay50), max(th.added_p99_ms, th.added_x_relay * relay99)


def _judge(d: dict[str, Any], rl: dict[str, Any], g: dict[str, Any], th: Thresholds) -> list[str]:
    out = []
    if not g["requests"] or not d["requests"] or not rl["requests"]:
        return ["no requests were measured (see the gate's logs)"]
    failed = g.get("locust_failed") or rl.get("locust_failed") or d.get("locust_failed")
    if failed:
        out.append(f"the load generator failed: {failed}")
    added50, added99 = g["p50_ms"] - d["p50_ms"], g["p99_ms"] - d["p99_ms"]
    limit50, limit99 = latency_limits(d, rl, th)
    if added50 > limit50:
        out.append(f"Dragonfly adds {added50:.2f} ms at p50 (limit {limit50:.2f} ms)")
    if added99 > limit99:
        out.append(f"Dragonfly adds {added99:.2f} ms at p99 (limit {limit99:.2f} ms)")
    if g["error_rate"] > th.error_rate:
        out.append(
            f"Dragonfly error rate {g['error_rate']:.2%} (limit {th.error_rate:.2%}): {g.get('error_kinds')}"
        )
    ratio = _ratio(g["cpu_us_per_req"], rl["cpu_us_per_req"])
    if ratio is None:
        out.append("no CPU per request was measured for Dragonfly or the relay")
    elif ratio > th.cpu_x_relay:
        out.append(f"Dragonfly costs {ratio:.2f}× the relay's CPU per request (limit {th.cpu_x_relay}×)")
    if d["rps"] and g["rps"] < th.min_rps_ratio * d["rps"]:
        out.append(f"Dragonfly kept up with only {g['rps']:.0f} of {d['rps']:.0f} requests/s")
    return out


def _render(r: dict[str, Any], rate: float, segments: int, segment_s: float) -> str:
    d, rl, g = r["direct"], r["relay"], r["dragonfly"]
    lines = [
        f"bench-gate: {rate:.0f} req/s non-streamed chat, {segments}×{segment_s:.0f}s per side, interleaved "
        f"(setup {r['setup_s']:.0f}s, total {r['total_s']:.0f}s, load average {' '.join(r['loadavg'])})",
        f"  direct     rps={d['rps']:7.1f} p50={d['p50_ms']:6.2f} ms p99={d['p99_ms']:6.2f} ms "
        f"errors={d['errors']}/{d['requests']} cpu={d['cpu_us_per_req']:.0f} µs/req",
        f"  relay      rps={rl['rps']:7.1f} p50={rl['p50_ms']:6.2f} ms p99={rl['p99_ms']:6.2f} ms "
        f"errors={rl['errors']}/{rl['requests']} cpu={rl['cpu_us_per_req']:.0f} µs/req",
        f"  dragonfly  rps={g['rps']:7.1f} p50={g['p50_ms']:6.2f} ms p99={g['p99_ms']:6.2f} ms "
        f"errors={g['errors']}/{g['requests']} cpu={g['cpu_us_per_req']:.0f} µs/req",
        f"  added      p50={r['added_p50_ms']:+.2f} ms (limit {r['limit_p50_ms']:.2f}) "
        f"p99={r['added_p99_ms']:+.2f} ms (limit {r['limit_p99_ms']:.2f}) "
        f"CPU × relay={r['cpu_x_relay'] or float('nan'):.2f} (limit {r['thresholds']['cpu_x_relay']}; "
        f"× direct {r['cpu_x_direct'] or float('nan'):.1f}, relay × direct "
        f"{r['relay_cpu_x_direct'] or float('nan'):.1f})",
    ]
    if r["failures"]:
        lines += ["FAIL: " + f for f in r["failures"]]
    else:
        lines.append("PASS")
    return "\n".join(lines)
