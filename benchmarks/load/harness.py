"""The side-by-side load run and the latency gate.

Every target is started once, then the same Locust load runs against each in turn, round after round
(interleaved, so drift hits every target alike); the server's process tree is metered from /proc while its
load runs. Results merge across rounds (histograms add up), then ratios are taken within the run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load import plot, services, summary, targets
from benchmarks.load.probe import ProbeResult, probe
from benchmarks.load.services import TreeMeter
from benchmarks.load.stats import hist_count, hist_mean, hist_percentile, merge
from benchmarks.load.targets import Target

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
RESULTS = services.REPO / "benchmarks" / "results"
# scenario -> (the Locust file's BENCH_SCENARIO, model kind, the request event that counts requests)
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "chat": ("chat", "chat", "chat"),
    "stream": ("stream", "chat", "chat_stream"),
    # The same streams below saturation: Poisson arrivals at a fixed total rate (`--stream-rate`), so the
    # added TTFT is what the hop adds to a stream, not the queue in front of a saturated worker.
    "stream-paced": ("stream", "chat", "chat_stream"),
    "embed": ("embed", "embed", "embed"),
}


def is_stream(scenario: str) -> bool:
    return SCENARIOS[scenario][0] == "stream"


@dataclass
class LoadRun:
    target: str
    scenario: str
    users: int
    rate: float
    wall_s: float = 0.0  # Locust's test_start → test_stop
    hist: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # the target's own process tree (excluding the seller behind a proxy)
    seller_cpu_s: float = 0.0
    cpu_parts: dict[str, float] = field(default_factory=dict)  # cpu_s by named part (pg-redis)
    rss_peak: int = 0
    rss_start: int = 0
    redis_commands: int | None = None
    locust_failed: str | None = None
    # The rest of the machine while the load ran (the CPU split): Locust's own CPU (its process, reaped
    # within the window) and the whole host's busy CPU (/proc/stat, every process, other tenants included).
    locust_cpu_s: float = 0.0
    host_cpu_s: float = 0.0
    # Requests each instance routed (its dragonfly_trades_total delta), for a target of several instances.
    instance_trades: list[float] = field(default_factory=list)

    def add(self, other: LoadRun) -> None:
        self.wall_s += other.wall_s
        for name, h in other.hist.items():
            self.hist[name] = merge([self.hist.get(name, {}), h])
        self.errors += other.errors
        for k, v in other.error_kinds.items():
            self.error_kinds[k] = self.error_kinds.get(k, 0) + v
        self.cpu_s += other.cpu_s
        self.seller_cpu_s += other.seller_cpu_s
        for part, secs in other.cpu_parts.items():
            self.cpu_parts[part] = self.cpu_parts.get(part, 0.0) + secs
        self.rss_peak = max(self.rss_peak, other.rss_peak)
        self.rss_start = self.rss_start or other.rss_start
        if other.redis_commands is not None:
            self.redis_commands = (self.redis_commands or 0) + other.redis_commands
        self.locust_failed = self.locust_failed or other.locust_failed
        self.locust_cpu_s += other.locust_cpu_s
        self.host_cpu_s += other.host_cpu_s
        if other.instance_trades:
            mine = self.instance_trades or [0.0] * len(other.instance_trades)
            self.instance_trades = [a + b for a, b in zip(mine, other.instance_trades, strict=False)]

    def requests(self) -> int:
        return hist_count(self.hist.get(SCENARIOS[self.scenario][2], {})) + self.errors_main()

    def errors_main(self) -> int:
        return self.errors

    def summary(self) -> dict[str, Any]:
        main = SCENARIOS[self.scenario][2]
        n = self.requests()
        ok = hist_count(self.hist.get(main, {}))

        def pct(name: str, p: float) -> float:
            return hist_percentile(self.hist.get(name, {}), p) / 1000

        out: dict[str, Any] = {
            "target": self.target,
            "scenario": self.scenario,
            "users": self.users,
            "requests": n,
            "ok": ok,
            "errors": self.errors,
            "error_rate": self.errors / n if n else float("nan"),
            "rps": ok / self.wall_s if self.wall_s else float("nan"),
            "cpu_us_per_req": self.cpu_s / n * 1e6 if n else float("nan"),
            "seller_cpu_us_per_req": self.seller_cpu_s / n * 1e6 if n else float("nan"),
            "cpu_parts_us_per_req": {k: v / n * 1e6 for k, v in self.cpu_parts.items()} if n else {},
            "rss_peak_mib": self.rss_peak / 2**20,
            "rss_start_mib": self.rss_start / 2**20,
            # Cores busy on average while the load ran: the target's tree, the seller, Locust, the host.
            "cores_busy": {
                "target": self.cpu_s / self.wall_s if self.wall_s else float("nan"),
                "seller": self.seller_cpu_s / self.wall_s if self.wall_s else float("nan"),
                "locust": self.locust_cpu_s / self.wall_s if self.wall_s else float("nan"),
                "host": self.host_cpu_s / self.wall_s if self.wall_s else float("nan"),
                **{k: v / self.wall_s for k, v in self.cpu_parts.items() if self.wall_s},
            },
        }
        if self.instance_trades:
            out["requests_by_instance"] = [round(x) for x in self.instance_trades]
        if is_stream(self.scenario):
            out |= {
                "ttft_p50_ms": pct("chat_stream ttft", 50),
                "ttft_p99_ms": pct("chat_stream ttft", 99),
                "total_p50_ms": pct("chat_stream total", 50),
                "total_p99_ms": pct("chat_stream total", 99),
            }
        else:
            out |= {
                "p50_ms": pct(main, 50),
                "p99_ms": pct(main, 99),
                "mean_ms": hist_mean(self.hist.get(main, {})) / 1000,
            }
        if self.redis_commands is not None:
            out["redis_commands_per_req"] = self.redis_commands / n if n else float("nan")
        if self.error_kinds:
            out["error_kinds"] = dict(sorted(self.error_kinds.items(), key=lambda kv: -kv[1])[:5])
        if self.locust_failed:
            out["locust_failed"] = self.locust_failed
        return out


def preflight(target: Target, scenario: str) -> str | None:
    """One request of the scenario's kind; returns why the target cannot serve it, or None."""
    kind = SCENARIOS[scenario][1]
    path = "/v1/embeddings" if kind == "embed" else "/v1/chat/completions"
    body: dict[str, Any] = {"model": target.models[kind]}
    if kind == "embed":
        body["input"] = "hello"
    else:
        body |= {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    req = urllib.request.Request(
        target.origin + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def run_locust(
    target: Target,
    scenario: str,
    *,
    users: int,
    duration_s: float,
    out_dir: Path,
    tag: str,
    rate: float = 0.0,
    seller_roots: list[int] | None = None,
) -> LoadRun:
    locust_scenario, kind, _ = SCENARIOS[scenario]
    hist_path = out_dir / f"{tag}.hist.json"
    hist_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BENCH_MODEL": target.models[kind],
        "BENCH_API_KEY": target.api_key,
        "BENCH_SCENARIO": locust_scenario,
        "BENCH_RATE": str(rate),
        "BENCH_HIST_OUT": str(hist_path),
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{max(1, round(duration_s))}s",
        "--host",
        target.origin,
        "--only-summary",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    run = LoadRun(target.name, scenario, users, rate)
    server = TreeMeter(target.roots)
    seller = TreeMeter(seller_roots or [])
    redis_port = target.extra.get("redis_port")
    redis0 = services.redis_commands_processed(redis_port) if redis_port else None
    instances = target.extra.get("instance_origins") or []
    trades0 = [targets.instance_trades(o) for o in instances]
    server.start()
    seller.start()
    host0 = host_busy_s()
    children0 = _children_cpu_s()
    with open(out_dir / f"{tag}.locust.log", "wb") as log:
        try:
            proc = subprocess.run(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=duration_s + 60, check=False
            )
            if proc.returncode != 0:
                run.locust_failed = f"locust exited {proc.returncode} (see {tag}.locust.log)"
        except subprocess.TimeoutExpired:
            run.locust_failed = "locust did not finish in time"
    run.locust_cpu_s = _children_cpu_s() - children0
    run.host_cpu_s = host_busy_s() - host0
    server.stop()
    seller.stop()
    if instances:
        trades1 = [targets.instance_trades(o) for o in instances]
        run.instance_trades = [
            (b - a) if a is not None and b is not None else float("nan")
            for a, b in zip(trades0, trades1, strict=True)
        ]
    if redis_port and redis0 is not None:
        run.redis_commands = services.redis_commands_processed(redis_port) - redis0
    run.cpu_s, run.rss_peak, run.rss_start = server.cpu_s, server.rss_peak, server.rss_start
    run.seller_cpu_s = seller.cpu_s
    names = target.extra.get("root_names")
    for name, pid in zip(names or [], target.roots, strict=False):
        run.cpu_parts[name] = run.cpu_parts.get(name, 0.0) + server.cpu_by_root.get(pid, 0.0)
    try:
        data = json.loads(hist_path.read_text())
    except (OSError, ValueError):
        run.locust_failed = run.locust_failed or "no histogram written"
        return run
    run.wall_s = max(0.0, float(data["stopped"]) - float(data["started"]))
    run.hist = {name: {int(k): int(v) for k, v in h.items()} for name, h in data["hist"].items()}
    run.errors = int(data["errors"].get(SCENARIOS[scenario][2], 0))
    run.error_kinds = {k: int(v) for k, v in data.get("error_kinds", {}).items()}
    return run


def _children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (the Locust run that just ended)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def host_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores (/proc/stat: every column but idle and
    iowait; guest time is already in user)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / services.CLK_TCK


# --- environment facts --------------------------------------------------------------------------------


def _cmd(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout + out.stderr).strip()
    except OSError:
        return ""


def loadavg() -> list[str]:
    """The 1, 5 and 15-minute load averages, as /proc/loadavg writes them."""
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def environment(loadavg_at_start: list[str] | None = None) -> dict[str, Any]:
    """Facts about the machine and the code measured. Called when the run ends: the load average at
    start must be read before anything starts (`run` passes it in), or it shows the run's own load."""
    import importlib.metadata as md

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30

    def v(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "absent"

    return {
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory_gib": round(mem_gib, 1),
        "os": _cmd(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "dragonfly_commit": _cmd(["git", "-C", str(services.REPO), "rev-parse", "--short", "HEAD"]),
        "dragonfly_dirty": bool(_cmd(["git", "-C", str(services.REPO), "status", "--porcelain", "python"])),
        "dragonfly_src": str(targets.DRAGONFLY_SRC or "working tree"),
        "loadavg_at_start": loadavg_at_start if loadavg_at_start is not None else loadavg(),
        "loadavg_at_end": loadavg(),
        "granian": v("granian"),
        "aiohttp": v("aiohttp"),
        "locust": v("locust"),
        "nginx": _cmd(["nginx", "-v"]).replace("nginx version: ", ""),
        "litellm": targets.litellm_version() or "not installed",
        "redis": _cmd(["redis-server", "--version"]).split(" ")[2] if _cmd(["which", "redis-server"]) else "",
    }


# --- the side-by-side run -----------------------------------------------------------------------------


@dataclass
class RunConfig:
    targets: list[str]
    scenarios: list[str]
    duration_s: float
    rounds: int
    users: int
    stream_users: int
    stream_rate: float
    probe_count: int
    out_dir: Path


def _start_targets(
    cfg: RunConfig, log_dir: Path, seller: Target
) -> tuple[list[Target], dict[str, str], list[Any]]:
    started: list[Target] = []
    skipped: dict[str, str] = {}
    owned: list[Any] = []
    for name in cfg.targets:
        t0 = time.monotonic()
        try:
            if name == "direct":
                started.append(seller)
            elif name == "nginx":
                started.append(targets.start_nginx(log_dir, seller))
            elif name == "relay":
                started.append(targets.start_bare_relay(log_dir, seller))
            elif name == "answer":
                started.append(targets.start_bare_answer(log_dir, seller))
            elif name == "embedded":
                started.append(targets.start_embedded(log_dir, seller))
            elif name == "pg-redis":
                t, svc = targets.start_pg_redis(log_dir, seller)
                started.append(t)
                owned += svc
            elif name == "pg-redis-x2":
                t, svc = targets.start_pg_redis_x2(log_dir, seller)
                started.append(t)
                owned += svc
            elif name == "litellm":
                started.append(targets.start_litellm(log_dir, seller))
            else:
                skipped[name] = "unknown target"
                continue
            print(f"  started {name} in {time.monotonic() - t0:.1f}s", flush=True)
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {str(exc)[:600]}"
            print(f"  SKIP {name}: {skipped[name]}", flush=True)
    return started, skipped, owned


def run(cfg: RunConfig) -> dict[str, Any]:
    load_at_start = loadavg()
    services.raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = cfg.out_dir / f"load-{stamp}"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"results in {out_dir}", flush=True)
    seller = targets.start_fake_seller(log_dir)
    started: list[Target] = []
    owned: list[Any] = []
    try:
        started, skipped, owned = _start_targets(cfg, log_dir, seller)
        notes = {t.name: t.notes for t in started if t.notes}
        # Unloaded latency at concurrency 1 (raw socket, µs), interleaved: one pass per target, twice;
        # non-streamed (whole response), then streamed (time to the first `data:` byte).
        probes: dict[str, list[ProbeResult]] = {}
        stream_probes: dict[str, list[ProbeResult]] = {}
        # As many passes as rounds (at least two), so the summary can pair the floor and Dragonfly per pass.
        for _ in range(max(2, cfg.rounds)):
            for t in started:
                try:
                    probes.setdefault(t.name, []).append(
                        probe(t.origin, t.api_key, t.models["chat"], count=cfg.probe_count)
                    )
                    stream_probes.setdefault(t.name, []).append(
                        probe(t.origin, t.api_key, t.models["chat"], count=cfg.probe_count, stream=True)
                    )
                except OSError as exc:
                    notes.setdefault(t.name, []).append(f"probe failed: {exc}")
        runs: dict[tuple[str, str], LoadRun] = {}
        per_round: list[dict[str, Any]] = []
        unsupported: dict[tuple[str, str], str] = {}
        for scenario in cfg.scenarios:
            for t in started:
                why = preflight(t, scenario)
                if why:
                    unsupported[(t.name, scenario)] = why
                    print(f"  {t.name}/{scenario}: not served ({why[:120]})", flush=True)
        for rnd in range(cfg.rounds):
            this_round: dict[str, Any] = {"round": rnd + 1, "results": []}
            per_round.append(this_round)
            for scenario in cfg.scenarios:
                users = cfg.stream_users if is_stream(scenario) else cfg.users
                rate = cfg.stream_rate / users if scenario == "stream-paced" else 0.0
                for t in started:
                    if (t.name, scenario) in unsupported:
                        continue
                    tag = f"r{rnd}-{scenario}-{t.name}"
                    r = run_locust(
                        t,
                        scenario,
                        users=users,
                        duration_s=cfg.duration_s,
                        out_dir=out_dir,
                        tag=tag,
                        rate=rate,
                        seller_roots=[] if t is seller else seller.roots,
                    )
                    s = r.summary()
                    this_round["results"].append(s)
                    print(
                        f"  round {rnd + 1} {scenario:6s} {t.name:9s} rps={s['rps']:8.1f} "
                        f"cpu/req={s['cpu_us_per_req']:9.1f}us errors={s['errors']}",
                        flush=True,
                    )
                    key = (t.name, scenario)
                    if key in runs:
                        runs[key].add(r)
                    else:
                        runs[key] = r
        result: dict[str, Any] = {
            "when": stamp,
            "command": " ".join(["python", "-m", "benchmarks.load", *sys.argv[1:]]),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "environment": environment(load_at_start),
            "skipped": skipped,
            "unsupported": {f"{k[0]}/{k[1]}": v for k, v in unsupported.items()},
            "notes": notes,
            "probe": {name: _merge_probes(ps) for name, ps in probes.items()},
            "stream_probe": {name: _merge_probes(ps) for name, ps in stream_probes.items()},
            "results": [r.summary() for r in runs.values()],
            # Each round's figures (the summary takes medians over them, paired within a round) and the
            # merged TTFT histograms of the stream scenarios (µs bucket → count: the CDF plot's samples).
            "rounds": per_round,
            "ttft_hist": ttft_histograms(runs),
        }
        _add_ratios(result)
        result["summary"] = summary.compute(result)
        (out_dir / "results.json").write_text(json.dumps(result, indent=2, default=_json_default))
        (out_dir / "results.md").write_text(render_markdown(result))
        print(render_markdown(result, with_summary=False))
        try:
            pngs = plot.try_plot_all(result, out_dir)
            print(
                f"plots: {', '.join(map(str, pngs))}" if pngs else "plots: skipped (matplotlib not installed)"
            )
        except Exception as exc:  # the results are saved; a picture that fails must not lose them
            print(f"plot failed: {type(exc).__name__}: {exc}", flush=True)
        table = summary.render(result["summary"])
        print(f"\nSummary against the targets (benchmarks/load/goals.py):\n\n{table}", flush=True)
        return result
    finally:
        for t in reversed(started):
            if t is not seller:
                t.stop()
        seller.stop()
        for s in reversed(owned):
            (s.close if hasattr(s, "close") else s.stop)()


def ttft_histograms(runs: dict[tuple[str, str], LoadRun]) -> dict[str, dict[str, dict[str, int]]]:
    """scenario → target → the merged `chat_stream ttft` histogram (µs bucket, as a string → count)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (target, scenario), r in runs.items():
        h = r.hist.get("chat_stream ttft")
        if is_stream(scenario) and h:
            out.setdefault(scenario, {})[target] = {str(k): v for k, v in sorted(h.items())}
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def _merge_probes(ps: list[ProbeResult]) -> dict[str, Any]:
    """Best of the passes (noise only ever adds latency): the lowest p50 and the lowest p99."""
    return {
        "passes": len(ps),
        "count": sum(p.count for p in ps),
        "errors": sum(p.errors for p in ps),
        "p50_us": min(p.p50_us for p in ps),
        "p99_us": min(p.p99_us for p in ps),
        "all": [asdict(p) for p in ps],
    }


def _add_ratios(result: dict[str, Any]) -> None:
    by = {(r["target"], r["scenario"]): r for r in result["results"]}
    for r in result["results"]:
        for ref in ("direct", "nginx", "litellm"):
            base = by.get((ref, r["scenario"]))
            if base is None or base is r:
                continue
            if ref != "litellm" and base["cpu_us_per_req"] and r["target"] not in ("direct",):
                r[f"cpu_x_{ref}"] = r["cpu_us_per_req"] / base["cpu_us_per_req"]
            if base["rps"]:
                r[f"rps_x_{ref}"] = r["rps"] / base["rps"]
    for kind in ("probe", "stream_probe"):
        direct = result.get(kind, {}).get("direct")
        if direct:
            for p in result[kind].values():
                p["added_p50_us"] = p["p50_us"] - direct["p50_us"]
                p["added_p99_us"] = p["p99_us"] - direct["p99_us"]
    # Added TTFT at the stream concurrency, vs direct in the same run.
    for r in result["results"]:
        base = by.get(("direct", r["scenario"]))
        if is_stream(r["scenario"]) and base is not None:
            r["added_ttft_p50_ms"] = r["ttft_p50_ms"] - base["ttft_p50_ms"]
            r["added_ttft_p99_ms"] = r["ttft_p99_ms"] - base["ttft_p99_ms"]


def _f(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def _load_at_end(env: dict[str, Any]) -> str:
    end = env.get("loadavg_at_end")
    return f", at end {' '.join(end)}" if end else ""


def render_markdown(result: dict[str, Any], *, with_summary: bool = True) -> str:
    env = result["environment"]
    dirty = ", dirty" if env["dragonfly_dirty"] and env["dragonfly_src"] == "working tree" else ""
    lines = [
        f"Run {result['when']}: `{result['command']}`",
        "",
        f"Machine: {env.get('host') or 'host ?'}, {env['nproc']} cores, {env['cpu']}, "
        f"{env['memory_gib']} GiB, kernel {env['kernel']}, "
        f"{env['os']}, load average at start {' '.join(env['loadavg_at_start'])}"
        f"{_load_at_end(env)}. Versions: Python "
        f"{env['python']}, Dragonfly {env['dragonfly_commit']} ({env['dragonfly_src']}"
        f"{dirty}), Granian {env['granian']}, aiohttp {env['aiohttp']}, "
        f"Locust {env['locust']}, nginx {env['nginx']}, LiteLLM {env['litellm']}, Redis {env['redis']}.",
        "",
        "Unloaded, concurrency 1, raw socket, non-streamed chat (µs):",
        "",
        "| target | p50 | p99 | added p50 vs direct | added p99 vs direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, p in result["probe"].items():
        lines.append(
            f"| {name} | {_f(p['p50_us'], 0)} | {_f(p['p99_us'], 0)} | {_f(p.get('added_p50_us'), 0)} "
            f"| {_f(p.get('added_p99_us'), 0)} |"
        )
    if result.get("stream_probe"):
        lines += [
            "",
            "Unloaded, concurrency 1, raw socket, streamed chat: time to the first `data:` byte (µs):",
            "",
            "| target | TTFT p50 | TTFT p99 | added p50 vs direct | added p99 vs direct |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, p in result["stream_probe"].items():
            lines.append(
                f"| {name} | {_f(p['p50_us'], 0)} | {_f(p['p99_us'], 0)} | {_f(p.get('added_p50_us'), 0)} "
                f"| {_f(p.get('added_p99_us'), 0)} |"
            )
    for scenario in SCENARIOS:
        rows = [r for r in result["results"] if r["scenario"] == scenario]
        if not rows:
            continue
        paced = f", Poisson arrivals at {_f(result['config']['stream_rate'], 0)} streams/s in all"
        lines += [
            "",
            f"**{scenario}** ({rows[0]['users']} users{paced if scenario == 'stream-paced' else ''}):",
            "",
        ]
        if is_stream(scenario):
            lines += [
                "| target | RPS | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | total p50 ms "
                "| total p99 ms | CPU µs/stream | × nginx | × direct | seller CPU µs | peak RSS MiB "
                "| errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r['target']} | {_f(r['rps'])} | {_f(r['ttft_p50_ms'], 2)} "
                    f"| {_f(r['ttft_p99_ms'], 2)} | {_f(r.get('added_ttft_p50_ms'), 2)} "
                    f"| {_f(r['total_p50_ms'], 2)} | {_f(r['total_p99_ms'], 2)} "
                    f"| {_f(r['cpu_us_per_req'], 0)} | {_f(r.get('cpu_x_nginx'), 1)} "
                    f"| {_f(r.get('cpu_x_direct'), 1)} | {_f(r['seller_cpu_us_per_req'], 0)} "
                    f"| {_f(r['rss_peak_mib'], 0)} | {r['errors']}/{r['requests']} |"
                )
        else:
            lines += [
                "| target | RPS | × direct | p50 ms | p99 ms | mean ms | CPU µs/req | × nginx | × direct "
                "| seller CPU µs | peak RSS MiB | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r['target']} | {_f(r['rps'])} | {_f(r.get('rps_x_direct'), 2)} "
                    f"| {_f(r['p50_ms'], 2)} | {_f(r['p99_ms'], 2)} | {_f(r['mean_ms'], 2)} "
                    f"| {_f(r['cpu_us_per_req'], 0)} "
                    f"| {_f(r.get('cpu_x_nginx'), 1)} | {_f(r.get('cpu_x_direct'), 1)} "
                    f"| {_f(r['seller_cpu_us_per_req'], 0)} | {_f(r['rss_peak_mib'], 0)} "
                    f"| {r['errors']}/{r['requests']} |"
                )
    extra = []
    for r in result["results"]:
        if "redis_commands_per_req" in r:
            extra.append(
                f"- {r['target']}/{r['scenario']}: "
                f"{_f(r['redis_commands_per_req'], 2)} Redis commands/request"
            )
        if r.get("cpu_parts_us_per_req"):
            parts = ", ".join(f"{k} {_f(v, 0)} µs" for k, v in r["cpu_parts_us_per_req"].items())
            extra.append(f"- {r['target']}/{r['scenario']} CPU per request by process tree: {parts}")
        if r.get("cores_busy"):
            busy = ", ".join(f"{k} {_f(v, 2)}" for k, v in r["cores_busy"].items())
            extra.append(f"- {r['target']}/{r['scenario']} cores busy during the load: {busy}")
        if r.get("requests_by_instance"):
            extra.append(f"- {r['target']}/{r['scenario']} requests by instance: {r['requests_by_instance']}")
        if r.get("error_kinds"):
            extra.append(f"- {r['target']}/{r['scenario']} errors: {r['error_kinds']}")
        if r.get("locust_failed"):
            extra.append(f"- {r['target']}/{r['scenario']}: {r['locust_failed']}")
    for k, v in result["skipped"].items():
        extra.append(f"- skipped {k}: {v}")
    for k, v in result["unsupported"].items():
        extra.append(f"- {k} not served: {v[:200]}")
    for k, v in result["notes"].items():
        extra.append(f"- {k}: {'; '.join(v)[:300]}")
    if extra:
        lines += ["", *extra]
    if with_summary and result.get("summary"):
        lines += [
            "",
            "Summary against the targets (benchmarks/load/goals.py):",
            "",
            summary.render(result["summary"]),
        ]
    return "\n".join(lines) + "\n"
