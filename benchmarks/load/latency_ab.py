"""`python -m benchmarks.load latency-ab --ref REF`: unloaded latency (concurrency 1) of the working tree
against REF's code, interleaved round by round, with the seller's own latency (direct) measured between
rounds — a difference of ~0.1 ms in p50 needs this: two probes of one server a minute apart differ by as
much on the shared 2-core machine.

Every target (`embedded`, `pg-redis`: each its own SQLite file, or its own PostgreSQL cluster and Redis)
is started twice, from REF (`targets.export_ref`) and from the working tree, all at once, against one
fake seller; then each round probes every server once (`probe.probe`: N sequential non-streamed chats over
one keep-alive socket), in alternating order. Prints per round and as medians: p50, p90, p99, and the
per-round paired difference head − baseline; writes `latency-ab-<time>.json` to `--runs-dir`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import harness, probe, targets
from benchmarks.load.targets import Target

KINDS = ("embedded", "pg-redis")


@dataclass
class LatencyAbConfig:
    ref: str
    kinds: list[str]
    rounds: int
    count: int
    out_dir: Path
    runs_dir: Path


def _start(kind: str, name: str, log_dir: Path, seller: Target, src: Path | None, owned: list[Any]) -> Target:
    if kind == "pg-redis":
        t, svc = targets.start_pg_redis(log_dir, seller, name=name, src=src)
        owned.extend(svc)
    else:
        t = targets.start_embedded(log_dir, seller, name=name, src=src)
    owned.append(t)
    return t


def _row(name: str, rounds: list[probe.ProbeResult]) -> dict[str, Any]:
    return {
        "name": name,
        "p50_us": [round(r.p50_us) for r in rounds],
        "p90_us": [round(r.p90_us) for r in rounds],
        "p99_us": [round(r.p99_us) for r in rounds],
        "errors": sum(r.errors for r in rounds),
        "median_p50_us": round(statistics.median(r.p50_us for r in rounds)),
        "median_p90_us": round(statistics.median(r.p90_us for r in rounds)),
        "median_p99_us": round(statistics.median(r.p99_us for r in rounds)),
    }


def run(cfg: LatencyAbConfig) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = cfg.out_dir / f"latency-ab-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = harness.environment()
    src = targets.export_ref(cfg.ref)
    owned: list[Any] = []
    seller = targets.start_fake_seller(log_dir)
    servers: dict[str, Target] = {}
    try:
        for kind in cfg.kinds:
            servers[f"{kind}-baseline"] = _start(kind, f"{kind}-baseline", log_dir, seller, src, owned)
            servers[f"{kind}-head"] = _start(kind, f"{kind}-head", log_dir, seller, None, owned)
        results: dict[str, list[probe.ProbeResult]] = {name: [] for name in ["direct", *servers]}
        results["direct"].append(probe.probe(seller.origin, seller.api_key, "echo-1", count=cfg.count))
        for r in range(cfg.rounds):
            names = list(servers) if r % 2 == 0 else list(servers)[::-1]
            for name in names:
                t = servers[name]
                results[name].append(probe.probe(t.origin, t.api_key, t.models["chat"], count=cfg.count))
            results["direct"].append(probe.probe(seller.origin, seller.api_key, "echo-1", count=cfg.count))
            line = ", ".join(f"{n} {results[n][-1].p50_us:,.0f}" for n in results)
            print(f"round {r + 1}/{cfg.rounds} p50 µs: {line}", flush=True)
    finally:
        for o in reversed(owned):
            (o.close if hasattr(o, "close") else o.stop)()
        seller.stop()
    rows = {name: _row(name, rs) for name, rs in results.items()}
    paired = {}
    for kind in cfg.kinds:
        base, head = results[f"{kind}-baseline"], results[f"{kind}-head"]
        diffs = [h.p50_us - b.p50_us for b, h in zip(base, head, strict=True)]
        paired[kind] = {
            "p50_diffs_us": [round(d) for d in diffs],
            "median_p50_diff_us": round(statistics.median(diffs)),
            "head_lower_in": f"{sum(d < 0 for d in diffs)}/{len(diffs)}",
        }
    report = {
        "kind": "latency-ab",
        "ref": cfg.ref,
        "config": {"kinds": cfg.kinds, "rounds": cfg.rounds, "count": cfg.count},
        "environment": env,
        "rows": rows,
        "paired": paired,
    }
    print()
    print(f"Unloaded non-streamed chat, concurrency 1, {cfg.count} requests per probe, {cfg.rounds} rounds")
    print(f"(baseline = {cfg.ref}, head = the working tree; medians over rounds, µs):")
    print()
    print("| server | p50 | p90 | p99 | errors |")
    print("|---|---:|---:|---:|---:|")
    for row in rows.values():
        print(
            f"| {row['name']} | {row['median_p50_us']:,} | {row['median_p90_us']:,}"
            f" | {row['median_p99_us']:,} | {row['errors']} |"
        )
    print()
    for kind, p in paired.items():
        print(
            f"{kind}: head − baseline p50 per round {p['p50_diffs_us']} µs;"
            f" median {p['median_p50_diff_us']:+,} µs; head lower in {p['head_lower_in']} rounds"
        )
    cfg.runs_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.runs_dir / f"latency-ab-{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"\nwritten: {path}")
    return report
