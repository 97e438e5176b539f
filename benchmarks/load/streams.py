"""Concurrency at scale: N concurrent streams through one data-plane worker.

The fake seller (one worker) answers every stream with `chunks` content chunks `chunk_delay_s` apart, so
a stream lasts (chunks − 1) × delay at the seller. An asyncio client (raw connections on uvloop,
`sse_client`) opens N streams, started evenly over `ramp_s` (1 s by default), and measures, per target:

- stretch: each stream's duration (request sent → `[DONE]`) against the seller's nominal duration;
- memory per stream: peak RSS of the target's process tree with N streams open, minus its RSS before,
  divided by N;
- cancellation: N streams are opened again, the client drops every connection mid-stream, and the
  seller's own counters say how many upstream streams were cancelled and how long after the drop the last
  one ended (CLOCK_MONOTONIC is shared between processes).

Every target starts on a quiet TCP stack: each pass leaves thousands of loopback connections in
TIME_WAIT for 60 s (2N client connections, and 2N upstream ones through a proxy), and with 15–23k of the
28k ephemeral ports taken a later target's connects cost more — the target measured last did worst (one
run: 60 % of its streams within 10 % when measured third, 100 % alone). Before each target the run waits
until fewer than `QUIET_TIME_WAIT` remain (at most `QUIET_WAIT_S`) and records the count it started with.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.load import services, targets
from benchmarks.load.services import TreeMeter
from benchmarks.load.sse_client import request_bytes, stream_once
from benchmarks.load.stats import percentile
from benchmarks.load.targets import Target


def _body(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "stream please"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


async def _one(host: str, port: int, request: bytes, delay: float, out: list[Any]) -> None:
    await asyncio.sleep(delay)
    await stream_once(host, port, request, out)


async def _seller_stats(session: aiohttp.ClientSession, seller: Target) -> dict[str, Any]:
    async with session.get(f"{seller.origin}/_stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))


QUIET_TIME_WAIT = 1000
QUIET_WAIT_S = 75.0


def time_wait_sockets() -> int:
    """TCP sockets in TIME_WAIT (state 06 in /proc/net/tcp and tcp6)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, "rb") as fh:
                next(fh, None)  # the header
                n += sum(1 for line in fh if line.split()[3] == b"06")
        except OSError:
            continue
    return n


def wait_for_quiet_tcp(limit: int = QUIET_TIME_WAIT, max_s: float = QUIET_WAIT_S) -> tuple[int, float]:
    """Wait until fewer than `limit` sockets are in TIME_WAIT (or `max_s` passed); returns the count then
    and the seconds waited."""
    started = time.monotonic()
    while (count := time_wait_sockets()) >= limit and time.monotonic() - started < max_s:
        time.sleep(1.0)
    return count, time.monotonic() - started


async def measure_target(
    target: Target, seller: Target, n: int, nominal_s: float, ramp_s: float, settle_s: float = 3.0
) -> dict[str, Any]:
    host, port_text = target.origin.removeprefix("http://").rsplit(":", 1)
    port = int(port_text)
    body = _body(target.models["chat"])
    request = request_bytes(host, port, "/v1/chat/completions", target.api_key, body)
    out: dict[str, Any] = {"target": target.name, "n": n, "nominal_s": nominal_s, "ramp_s": ramp_s}

    def launch(into: list[Any]) -> list[asyncio.Future[None]]:
        """N streams, started evenly over the ramp, each appending its outcome to `into`."""
        return [asyncio.ensure_future(_one(host, port, request, i * ramp_s / n, into)) for i in range(n)]

    # 1. N streams to completion.
    meter = TreeMeter(target.roots, interval_s=0.1)
    results: list[Any] = []
    async with _session() as ctl:
        await asyncio.sleep(0.5)
        meter.start()
        tasks = launch(results)
        deadline = ramp_s + nominal_s * 3 + 30
        _done, pending = await asyncio.wait(tasks, timeout=deadline)
        for t in pending:
            t.cancel()
        meter.stop()
        seller_after = await _seller_stats(ctl, seller)
    oks = [r for r in results if r[0] == "ok"]
    durations = sorted(r[3] - r[1] for r in oks)
    ttfts = sorted(r[2] - r[1] for r in oks if r[2] is not None)
    stretch = [d / nominal_s - 1 for d in durations]
    # The same from the first byte on: how much the relay itself slows a stream once it runs (the rest
    # of `stretch` is the wait to start, TTFT).
    body_stretch = sorted((r[3] - r[2]) / nominal_s - 1 for r in oks if r[2] is not None)
    # Per stream, in start order: start (s after the first), TTFT and duration (ms), and how it ended
    # ("ok", "error", "truncated", "dropped"), for timelines and the stretch histogram.
    t_first = min((r[1] for r in results), default=0.0)
    out["samples"] = [
        [
            round(r[1] - t_first, 4),
            round((r[2] - r[1]) * 1000, 2) if r[2] else None,
            round((r[3] - r[1]) * 1000, 2),
            r[0],
        ]
        for r in sorted(results, key=lambda r: r[1])
    ]
    out["complete"] = {
        "ok": len(oks),
        "not_ok": {
            kind: sum(1 for r in results if r[0] == kind) for kind in ("error", "truncated", "dropped")
        }
        | {"unfinished": len(pending)},
        "errors": sorted({str(r[4]) for r in results if r[4]})[:5],
        "duration_p50_s": percentile(durations, 50),
        "duration_p99_s": percentile(durations, 99),
        "duration_max_s": durations[-1] if durations else math.nan,
        "stretch_p50": percentile(stretch, 50),
        "stretch_p99": percentile(stretch, 99),
        "within_10pct": sum(1 for s in stretch if s <= 0.10) / n,
        "body_stretch_p50": percentile(body_stretch, 50),
        "body_stretch_p99": percentile(body_stretch, 99),
        "ttft_p50_ms": percentile(ttfts, 50) * 1000,
        "ttft_p99_ms": percentile(ttfts, 99) * 1000,
        "rss_start_mib": meter.rss_start / 2**20,
        "rss_peak_mib": meter.rss_peak / 2**20,
        "rss_per_stream_kib": (meter.rss_peak - meter.rss_start) / n / 1024,
        "cpu_s": meter.cpu_s,
        "cpu_us_per_chunk": meter.cpu_s / max(1, len(oks)) / (nominal_s / 0.05 + 1) * 1e6
        if nominal_s
        else math.nan,
        "peak_open": _peak_open(results),
        "seller_peak_streams": seller_after.get("peak_streams"),
    }
    await asyncio.sleep(settle_s)
    # 2. N streams, dropped mid-stream by the client.
    drop_results: list[Any] = []
    async with _session() as ctl:
        before = await _seller_stats(ctl, seller)
        tasks = launch(drop_results)
        # Drop when the seller has (nearly) all of them open, or at most 0.8 s after the ramp ended (the
        # streams last (chunks - 1) x delay, so all that started are mid-stream then).
        open_deadline = time.monotonic() + ramp_s + 0.8
        while time.monotonic() < open_deadline:
            st = await _seller_stats(ctl, seller)
            if st["active_streams"] >= n * 0.98:
                break
            await asyncio.sleep(0.05)
        opened = (await _seller_stats(ctl, seller))["active_streams"]
        t_drop = time.monotonic()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # every connection to the target is closed now
        t_closed = time.monotonic()
        gone_at = None
        poll_deadline = t_drop + 15
        while time.monotonic() < poll_deadline:
            st = await _seller_stats(ctl, seller)
            if st["active_streams"] == 0:
                gone_at = time.monotonic()
                break
            await asyncio.sleep(0.02)
        after = await _seller_stats(ctl, seller)
    out["cancel"] = {
        "open_at_drop": opened,
        "client_close_s": t_closed - t_drop,
        "seller_cancelled": after["cancelled"] - before["cancelled"],
        "seller_completed_anyway": after["completed"] - before["completed"],
        "still_active_after_15s": after["active_streams"] if gone_at is None else 0,
        "all_upstreams_gone_after_s": (gone_at - t_drop) if gone_at else None,
        "last_upstream_cancel_after_s": (after["last_cancel_mono"] - t_drop)
        if after["last_cancel_mono"]
        else None,
    }
    return out


def main(
    *,
    n: int,
    chunks: int,
    chunk_delay_s: float,
    target_names: list[str],
    out_dir: Path,
    ramp_s: float = 1.0,
) -> dict[str, Any]:
    import uvloop

    from benchmarks.load import harness, plot, summary

    load_at_start = harness.loadavg()
    services.raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"streams-{stamp}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    seller = targets.start_fake_seller(
        log_dir, chunks=chunks, chunk_delay_s=chunk_delay_s, name="stream-seller"
    )
    started: list[Target] = []
    nominal = (chunks - 1) * chunk_delay_s
    report: dict[str, Any] = {
        "kind": "streams",
        "when": stamp,
        "command": " ".join(["python", "-m", "benchmarks.load", *sys.argv[1:]]),
        "n": n,
        "chunks": chunks,
        "chunk_delay_s": chunk_delay_s,
        "ramp_s": ramp_s,
        "targets": [],
    }
    try:
        for name in target_names:
            if name == "direct":
                started.append(seller)
            elif name == "nginx":
                started.append(targets.start_nginx(log_dir, seller))
            elif name == "relay":
                started.append(targets.start_bare_relay(log_dir, seller))
            elif name == "embedded":
                started.append(targets.start_embedded(log_dir, seller))
            else:
                raise SystemExit(f"streams: unsupported target {name} (direct, nginx, relay, embedded)")
        for t in started:
            print(
                f"  {t.name}: {n} streams × {chunks} chunks at {chunk_delay_s * 1000:.0f} ms, "
                f"started over {ramp_s:g} s …",
                flush=True,
            )
            time_wait, waited = wait_for_quiet_tcp()
            print(f"    {time_wait} sockets in TIME_WAIT at start (waited {waited:.0f} s)", flush=True)
            r = uvloop.run(measure_target(t, seller, n, nominal, ramp_s))
            r["time_wait_at_start"] = time_wait
            report["targets"].append(r)
            print(_render_one(r), flush=True)
        report["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        report["environment"] = harness.environment(load_at_start)
        report["summary"] = summary.compute(report)
        (run_dir / "streams.json").write_text(json.dumps(_clean(report), indent=2, default=_json_default))
        table = summary.render(report["summary"])
        (run_dir / "summary.md").write_text(table)
        try:
            png = plot.try_plot_streams(report, run_dir / "stretch.png")
            print(f"plot: {png}" if png else "plot: skipped (matplotlib not installed)", flush=True)
        except Exception as exc:  # the results are saved; a picture that fails must not lose them
            print(f"plot failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"results in {run_dir}\n\nSummary against the targets (benchmarks/load/goals.py):\n\n{table}")
        return report
    finally:
        for t in reversed(started):
            if t is not seller:
                t.stop()
        seller.stop()


def _json_default(o: Any) -> Any:
    return str(o)


def _clean(x: Any) -> Any:
    """NaN and infinities → null (JSON has neither)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _peak_open(results: list[Any]) -> int:
    """Most streams open at once on the client side (request sent, end not yet received)."""
    edges = sorted([(r[1], 1) for r in results] + [(r[3], -1) for r in results])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def _render_one(r: dict[str, Any]) -> str:
    c, k = r["complete"], r["cancel"]
    return (
        f"    complete: {c['ok']}/{r['n']} ok {c['not_ok']} {c['errors']}; "
        f"duration p50 "
        f"{c['duration_p50_s']:.3f}s p99 {c['duration_p99_s']:.3f}s max {c['duration_max_s']:.3f}s "
        f"(seller {r['nominal_s']:.2f}s): stretch "
        f"p50 {c['stretch_p50']:+.1%} p99 {c['stretch_p99']:+.1%}, {c['within_10pct']:.1%} within 10 % "
        f"(from the first byte: p50 {c['body_stretch_p50']:+.1%} p99 {c['body_stretch_p99']:+.1%}); "
        f"TTFT p50 {c['ttft_p50_ms']:.1f} ms p99 {c['ttft_p99_ms']:.1f} ms; RSS {c['rss_start_mib']:.0f} → "
        f"{c['rss_peak_mib']:.0f} MiB = {c['rss_per_stream_kib']:.1f} KiB/stream; CPU {c['cpu_s']:.1f}s; "
        f"peak open {c['peak_open']}\n"
        f"    cancel: {k['open_at_drop']} open at drop; seller cancelled {k['seller_cancelled']}, completed "
        f"anyway {k['seller_completed_anyway']}, all upstreams gone after "
        f"{_s(k['all_upstreams_gone_after_s'])}, still active after 15 s: {k['still_active_after_15s']}"
    )


def _s(x: float | None) -> str:
    return "never (15 s)" if x is None else f"{x * 1000:.0f} ms"
