"""`python -m benchmarks.load ab --ref REF`: what the working tree's per-request bookkeeping costs against an
older commit, both measured in the same run (benchmarks/README.md, "Hedging and health when unused").

Targets, each started once, then measured in interleaved rounds (the order rotates by one every round and is
reversed every other round, so no target always runs first, last or right after the same one):

relay             `bare_relay.py` (Granian + the seller client, no Dragonfly logic): the floor
baseline@<ref>    `dragonfly serve --no-demo` (SQLite, in-process state) running REF's code: a
                  `git worktree` of REF first on PYTHONPATH, with REF's native module copied in
                  (`native_build`: the working tree's compiled one when rust_core/ is the same, else
                  built from REF's rust_core)
head              the same from the working tree (its buyer key has the default profile: no hedging)
head+hedge-armed  the head server again, through a second buyer key bound to a profile with
                  `hedge: {enabled: true, after_ms: 600000}` (made through the control-plane API): every
                  request takes the hedged path, no hedge ever fires
head-aa           optional (`--targets …,aa`): a second server running the working tree, its own data
                  directory: head-aa / head is an A/A comparison, the noise between two servers of one code

Each Dragonfly target is seeded by its own code (`seed.py` run with the target's PYTHONPATH) into its own
fresh data directory, so each gets the schema its migrations make. Per round and target: the unloaded
probe (concurrency 1, non-streamed and streamed), then a Locust load per scenario (chat, stream); the CPU
per request is the server's process tree (serve, control plane and gateway) over the requests it served.
Figures are per round and then summarised over rounds (median, min–max); ratios are paired within a round.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import harness, native_build, services, targets
from benchmarks.load.harness import LoadRun, is_stream, preflight, run_locust
from benchmarks.load.probe import ProbeResult, probe
from benchmarks.load.targets import Target

RUNS = services.REPO / "benchmarks" / "runs"
HEDGE = {"enabled": True, "after_ms": 600_000}  # armed, never fires: the fake seller answers in ~1 ms
BUYER = ("buyer@bench.test", "buyer-password-1")  # as seed.py makes it
ALL = ("relay", "baseline", "head", "hedge", "aa")
SCENARIOS = ("chat", "stream")


@dataclass
class AbConfig:
    ref: str
    targets: list[str]
    scenarios: list[str]
    duration_s: float
    rounds: int
    users: int
    stream_users: int
    probe_count: int
    out_dir: Path
    runs_dir: Path
    png: Path | None
    # head (and head-aa) from a worktree of this commit instead of the working tree: isolates one commit
    # (e.g. --ref 63a7dcd^ --head-ref 63a7dcd measures what that commit alone added)
    head_ref: str | None = None


# --- the baseline's code ------------------------------------------------------------------------------


def _git(*args: str, check: bool = True) -> str:
    out = subprocess.run(
        ["git", "-C", str(services.REPO), *args], capture_output=True, text=True, check=False, timeout=300
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()[:500]}")
    return out.stdout.strip()


class Worktree:
    """`git worktree add --detach` of one commit in a temporary directory, with that commit's native module
    (`native_build`: the working tree's compiled one when rust_core/ is the same, else built from the
    commit) copied in; removed again by `remove`."""

    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.tmp = Path(tempfile.mkdtemp(prefix="dragonfly-ab-"))
        self.path = self.tmp / f"src-{sha[:12]}"
        self.native = ""

    def add(self) -> Path:
        _git("worktree", "add", "--detach", str(self.path), self.sha)
        self.native = native_build.install(self.sha, self.path)
        return self.path

    def remove(self) -> None:
        if self.path.exists():
            _git("worktree", "remove", "--force", str(self.path), check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _git("worktree", "prune", check=False)


# --- the hedge-armed key, through the control-plane API -----------------------------------------------


def _api(origin: str, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        origin + path, data=json.dumps(body).encode(), headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read()[:300].decode(errors="replace")
        raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {text}") from exc


def _key_with_profile(
    origin: str, token: str, name: str, fields: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    profile = _api(
        origin, "POST", "/api/routing/profiles", {"name": name, "strategy": "balanced", **fields}, token
    )
    key = _api(origin, "POST", "/api/keys", {"name": name, "routing_profile_id": profile["id"]}, token)
    return str(key["key"]), profile


def check_profiles(t: Target) -> str:
    """Log in as the seeded buyer and make a sentinel key bound to a profile no listing satisfies, which
    the data plane must refuse: proof that it routes with the profile of a key made through the API (an
    unknown profile would quietly fall back to the default). Done on every Dragonfly target, so that each
    holds the same stored profiles (the account's default profile is created with the first). Returns the
    session token."""
    email, password = BUYER
    login = _api(t.origin, "POST", "/api/auth/login", {"email": email, "password": password})
    token = str(login["access_token"])
    sentinel, _ = _key_with_profile(t.origin, token, "bench-sentinel", {"max_input_price_per_mtok": "0.01"})
    why = preflight(Target("sentinel", t.origin, sentinel, dict(t.models), []), "chat")
    if why is None or "no_listing_matches_profile" not in why:
        raise RuntimeError(f"{t.name}: a key's routing profile is not in effect at the data plane ({why})")
    return token


def arm_hedge(head: Target, token: str) -> Target:
    """The head server through a second buyer key whose profile arms hedging (never firing)."""
    key, profile = _key_with_profile(head.origin, token, "bench-hedge-armed", {"hedge": HEDGE})
    if profile.get("hedge") != HEDGE:
        raise RuntimeError(f"the profile was stored with hedge={profile.get('hedge')}, not {HEDGE}")
    t = Target("head+hedge-armed", head.origin, key, dict(head.models), list(head.roots))
    t.extra["profile"] = {"id": profile["id"], "strategy": profile["strategy"], "hedge": profile["hedge"]}
    return t


# --- the run ------------------------------------------------------------------------------------------


def _spread(xs: list[float]) -> dict[str, float]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "spread_pct": float("nan")}
    med = statistics.median(xs)
    return {
        "median": med,
        "min": min(xs),
        "max": max(xs),
        # max/min − 1 over the rounds of one target: the run-to-run noise of that figure
        "spread_pct": (max(xs) / min(xs) - 1) * 100 if min(xs) > 0 else float("nan"),
    }


def _start(
    cfg: AbConfig,
    log_dir: Path,
    seller: Target,
    tree: Path | None,
    short: str,
    head_tree: Path | None,
    head_code: str,
    base_code: str = "",
) -> list[Target]:
    started: list[Target] = []
    head: Target | None = None
    tokens: dict[str, str] = {}

    def dragonfly(label: str, code: str, src: Path | None = None) -> Target:
        db = log_dir / f"{label}-data" / "dragonfly.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        t = targets.start_dragonfly(label, log_dir, seller, f"sqlite:///{db}", src=src)
        t.extra["code"] = code
        tokens[label] = check_profiles(t)
        return t

    for name in cfg.targets:
        t0 = time.monotonic()
        if name == "relay":
            started.append(targets.start_bare_relay(log_dir, seller))
        elif name == "baseline":
            assert tree is not None
            started.append(dragonfly(f"baseline@{short}", base_code, tree))
        elif name == "head":
            head = dragonfly("head", head_code, head_tree)
            started.append(head)
        elif name == "aa":
            started.append(dragonfly("head-aa", f"{head_code} (a second server: A/A)", head_tree))
        elif name == "hedge":
            if head is None:
                raise RuntimeError("target hedge needs target head before it (the head server, another key)")
            t = arm_hedge(head, tokens["head"])
            t.extra["code"] = f"{head_code} (the head server)"
            started.append(t)
        else:
            raise RuntimeError(f"unknown target {name!r} (known: {', '.join(ALL)})")
        print(f"  started {started[-1].name} in {time.monotonic() - t0:.1f}s", flush=True)
    return started


def run(cfg: AbConfig) -> dict[str, Any]:
    load_at_start = harness.loadavg()
    if targets.DRAGONFLY_SRC is not None:
        raise RuntimeError("ab measures the working tree against --ref: do not pass --dragonfly-ref too")
    sha = _git("rev-parse", "--verify", f"{cfg.ref}^{{commit}}")
    short = sha[:7]
    # `head` runs the working tree as it is now, uncommitted changes under python/ included — or, with
    # --head-ref, that commit's code from a worktree of its own
    head_sha = _git("rev-parse", "--verify", f"{cfg.head_ref}^{{commit}}") if cfg.head_ref else None
    head_code: dict[str, Any] = (
        {"sha": head_sha, "uncommitted": []}
        if head_sha
        else {
            "sha": _git("rev-parse", "HEAD"),
            "uncommitted": _git("status", "--porcelain", "--", "python", "rust_core").splitlines(),
        }
    )
    services.raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = cfg.out_dir / f"ab-{stamp}"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {out_dir}", flush=True)
    wt = Worktree(sha) if "baseline" in cfg.targets else None
    head_wt = Worktree(head_sha) if head_sha else None
    seller: Target | None = None
    started: list[Target] = []
    try:
        tree = wt.add() if wt is not None else None
        if tree is not None:
            print(f"  baseline code: {cfg.ref} = {short} in {tree}", flush=True)
        head_tree = head_wt.add() if head_wt is not None else None
        if head_tree is not None and head_sha is not None:
            print(f"  head code: {cfg.head_ref} = {head_sha[:7]} in {head_tree}", flush=True)
        head_label = (
            f"git worktree of {head_wt.sha[:7]} + {head_wt.native}" if head_wt is not None else "working tree"
        )
        base_label = f"git worktree of {short} + {wt.native}" if wt is not None else ""
        seller = targets.start_fake_seller(log_dir)
        started = _start(cfg, log_dir, seller, tree, short, head_tree, head_label, base_label)
        for scenario in cfg.scenarios:
            for t in started:
                why = preflight(t, scenario)
                if why:
                    raise RuntimeError(f"{t.name} does not serve {scenario}: {why}")
        rounds: list[dict[str, Any]] = []
        merged: dict[tuple[str, str], LoadRun] = {}
        probes: dict[str, dict[str, list[ProbeResult]]] = {
            t.name: {"chat": [], "stream": []} for t in started
        }
        for rnd in range(cfg.rounds):
            k = rnd % len(started)
            order = started[k:] + started[:k]
            if rnd % 2:
                order.reverse()
            this: dict[str, Any] = {"round": rnd + 1, "order": [t.name for t in order], "results": []}
            for t in order:
                for kind, streamed in (("chat", False), ("stream", True)):
                    p = probe(t.origin, t.api_key, t.models["chat"], count=cfg.probe_count, stream=streamed)
                    probes[t.name][kind].append(p)
            for scenario in cfg.scenarios:
                users = cfg.stream_users if is_stream(scenario) else cfg.users
                for t in order:
                    r = run_locust(
                        t,
                        scenario,
                        users=users,
                        duration_s=cfg.duration_s,
                        out_dir=out_dir,
                        tag=f"r{rnd}-{scenario}-{t.name}",
                        seller_roots=seller.roots,
                    )
                    s = r.summary()
                    this["results"].append(s)
                    print(
                        f"  round {rnd + 1} {scenario:6s} {t.name:22s} rps={s['rps']:8.1f} "
                        f"cpu/req={s['cpu_us_per_req']:7.1f}us errors={s['errors']}",
                        flush=True,
                    )
                    if (t.name, scenario) in merged:
                        merged[(t.name, scenario)].add(r)
                    else:
                        merged[(t.name, scenario)] = r
            rounds.append(this)
        result: dict[str, Any] = {
            "kind": "ab",
            "when": stamp,
            "command": " ".join(["python", "-m", "benchmarks.load", *sys.argv[1:]]),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "ref": {"given": cfg.ref, "sha": sha},
            "head": head_code,
            "environment": harness.environment(load_at_start),
            "targets": [
                {"name": t.name, "code": t.extra.get("code", "working tree"), **_profile(t)} for t in started
            ],
            "probe": {n: {k: [asdict(p) for p in ps] for k, ps in d.items()} for n, d in probes.items()},
            "rounds": rounds,
            "merged": [r.summary() for r in merged.values()],
        }
        result["figures"] = figures(result)
        md = render(result)
        result = _clean(result)
        keep_run(result, md, out_dir, cfg.runs_dir / f"ab-{stamp}.json")
        draw(try_plot, result, cfg.png or out_dir / "ab.png")
        return result
    finally:
        for t in reversed(started):
            t.stop()
        if seller is not None:
            seller.stop()
        if wt is not None:
            wt.remove()
        if head_wt is not None:
            head_wt.remove()


def keep_run(result: dict[str, Any], md: str, out_dir: Path, kept: Path) -> None:
    """The run's tables and data into its results directory, the data kept in `kept` (benchmarks/runs/),
    the tables printed."""
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    (out_dir / "results.md").write_text(md)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(result, indent=2) + "\n")
    print(md)
    print(f"run data: {kept}", flush=True)


def draw(plot: Any, result: dict[str, Any], png: Path) -> None:
    """`plot(result, png)`, reported; the data is saved first, so a picture that fails must not lose it."""
    try:
        written = plot(result, png)
        print(f"plot: {written}" if written else "plot: skipped (matplotlib not installed)", flush=True)
    except Exception as exc:
        print(f"plot failed: {type(exc).__name__}: {exc}", flush=True)


def _profile(t: Target) -> dict[str, Any]:
    return {"profile": t.extra["profile"]} if "profile" in t.extra else {}


def _clean(x: Any) -> Any:
    """NaN → null (JSON has no NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


# --- figures ------------------------------------------------------------------------------------------


def _per_round(result: dict[str, Any], target: str, scenario: str, field: str) -> list[float]:
    out = []
    for rnd in result["rounds"]:
        for r in rnd["results"]:
            if r["target"] == target and r["scenario"] == scenario:
                v = r.get(field)
                out.append(float("nan") if v is None else float(v))
    return out


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """Per target and scenario: CPU per request over the rounds (median, min–max, spread), the same above
    the relay (paired within each round), RPS, loaded latency and its excess over the relay (merged
    histograms); per target the unloaded probe (best of the rounds, as `run` does) and its excess over
    the relay; and the paired per-round ratios head / baseline and hedge-armed / head."""
    names = [t["name"] for t in result["targets"]]
    baseline = next((n for n in names if n.startswith("baseline@")), None)
    merged = {(r["target"], r["scenario"]): r for r in result["merged"]}
    scenarios = result["config"]["scenarios"]
    out: dict[str, Any] = {"load": {}, "probe": {}, "ratios": {}}
    for scenario in scenarios:
        relay_cpu = _per_round(result, "relay", scenario, "cpu_us_per_req") if "relay" in names else []
        lat = "ttft_p" if is_stream(scenario) else "p"
        relay_m = merged.get(("relay", scenario))
        for n in names:
            cpu = _per_round(result, n, scenario, "cpu_us_per_req")
            m = merged[(n, scenario)]
            row: dict[str, Any] = {
                "cpu_us_per_req": _spread(cpu),
                "cpu_rounds": cpu,
                "rps": _spread(_per_round(result, n, scenario, "rps")),
                f"{lat}50_ms": m[f"{lat}50_ms"],
                f"{lat}99_ms": m[f"{lat}99_ms"],
                "errors": m["errors"],
                "requests": m["requests"],
            }
            if relay_cpu and n != "relay":
                row["cpu_above_relay_us"] = _spread([a - b for a, b in zip(cpu, relay_cpu, strict=True)])
            if relay_m is not None and n != "relay":
                row[f"added_{lat}50_ms"] = m[f"{lat}50_ms"] - relay_m[f"{lat}50_ms"]
                row[f"added_{lat}99_ms"] = m[f"{lat}99_ms"] - relay_m[f"{lat}99_ms"]
            out["load"].setdefault(scenario, {})[n] = row
    for n in names:
        out["probe"][n] = {}
        for kind, ps in result["probe"][n].items():
            p50 = [p["p50_us"] for p in ps]
            p99 = [p["p99_us"] for p in ps]
            out["probe"][n][kind] = {
                "p50_us": min(p50),
                "p99_us": min(p99),
                "p50_rounds": p50,
                "p99_rounds": p99,
            }
    if "relay" in out["probe"]:
        relay = out["probe"]["relay"]
        for n, kinds in out["probe"].items():
            if n != "relay":
                for kind, p in kinds.items():
                    p["added_p50_us"] = p["p50_us"] - relay[kind]["p50_us"]
                    p["added_p99_us"] = p["p99_us"] - relay[kind]["p99_us"]
    pairs = [
        ("head / baseline", "head", baseline),
        ("hedge-armed / head", "head+hedge-armed", "head"),
        ("head-aa / head (A/A)", "head-aa", "head"),
    ]
    for label, a, b in pairs:
        if a not in names or b is None or b not in names:
            continue
        ratios: dict[str, Any] = {}
        for scenario in scenarios:
            ca = _per_round(result, a, scenario, "cpu_us_per_req")
            cb = _per_round(result, b, scenario, "cpu_us_per_req")
            ratios[f"{scenario}_cpu"] = _spread([x / y for x, y in zip(ca, cb, strict=True)])
            if "relay" in names:
                cr = _per_round(result, "relay", scenario, "cpu_us_per_req")
                ratios[f"{scenario}_cpu_above_relay"] = _spread(
                    [(x - r) / (y - r) for x, y, r in zip(ca, cb, cr, strict=True) if y > r]
                )
            ra = _per_round(result, a, scenario, "rps")
            rb = _per_round(result, b, scenario, "rps")
            ratios[f"{scenario}_rps"] = _spread([x / y for x, y in zip(ra, rb, strict=True)])
        out["ratios"][label] = ratios
    return out


# --- report -------------------------------------------------------------------------------------------


def _f(x: Any, nd: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{nd}f}"


def _mm(s: dict[str, float], nd: int = 0) -> str:
    return f"{_f(s['median'], nd)} ({_f(s['min'], nd)}–{_f(s['max'], nd)})"


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    fig = result["figures"]
    cfg = result["config"]
    names = [t["name"] for t in result["targets"]]
    lines = [
        f"A/B run {result['when']}: `{result['command']}`",
        "",
        f"Machine: {env.get('host') or 'host ?'}, {env['nproc']} cores, {env['cpu']}, "
        f"{env['memory_gib']} GiB, kernel {env['kernel']}, {env['os']}, "
        f"load average at start {' '.join(env['loadavg_at_start'])}, "
        f"at end {' '.join(env['loadavg_at_end'])}. Python {env['python']}, Granian {env['granian']}, "
        f"Locust {env['locust']}. Head {env['dragonfly_commit']}"
        f"{' + uncommitted changes' if env['dragonfly_dirty'] else ''}; baseline {result['ref']['given']} = "
        f"{result['ref']['sha'][:10]}. {cfg['rounds']} rounds × {cfg['duration_s']:g} s per target and "
        "scenario, order rotated each round and reversed every other; cells: median over rounds (min–max).",
        "",
    ]
    for scenario in cfg["scenarios"]:
        lat = "ttft_p" if is_stream(scenario) else "p"
        what = "TTFT" if is_stream(scenario) else "latency"
        users = cfg["stream_users"] if is_stream(scenario) else cfg["users"]
        lines += [
            f"**{scenario}** ({users} closed-loop connections; {what} from the merged rounds, "
            "added = over relay):",
            "",
            f"| target | CPU µs/req | spread over rounds | CPU above relay µs | RPS | {what} p50 / p99 ms "
            f"| added p50 / p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for n in names:
            r = fig["load"][scenario][n]
            above = r.get("cpu_above_relay_us")
            lines.append(
                f"| {n} | {_mm(r['cpu_us_per_req'])} | {_f(r['cpu_us_per_req']['spread_pct'], 1)} % "
                f"| {_mm(above) if above else '–'} | {_mm(r['rps'])} "
                f"| {_f(r[f'{lat}50_ms'], 2)} / {_f(r[f'{lat}99_ms'], 2)} "
                f"| {_f(r.get(f'added_{lat}50_ms'), 2)} / {_f(r.get(f'added_{lat}99_ms'), 2)} "
                f"| {r['errors']}/{r['requests']} |"
            )
        lines.append("")
    lines += [
        "Unloaded, concurrency 1 (raw socket; best of the rounds; added = over relay), µs:",
        "",
        "| target | chat p50 / p99 | added p50 / p99 | stream TTFT p50 / p99 | added p50 / p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in names:
        c, s = fig["probe"][n]["chat"], fig["probe"][n]["stream"]
        lines.append(
            f"| {n} | {_f(c['p50_us'])} / {_f(c['p99_us'])} | {_f(c.get('added_p50_us'))} / "
            f"{_f(c.get('added_p99_us'))} | {_f(s['p50_us'])} / {_f(s['p99_us'])} "
            f"| {_f(s.get('added_p50_us'))} / {_f(s.get('added_p99_us'))} |"
        )
    if fig["ratios"]:
        lines += [
            "",
            "Ratios, paired within each round (median over rounds, min–max):",
            "",
            "| ratio | "
            + " | ".join(f"{s} CPU | {s} CPU above relay | {s} RPS" for s in cfg["scenarios"])
            + " |",
            "|---|" + "---:|" * (3 * len(cfg["scenarios"])),
        ]
        for label, r in fig["ratios"].items():
            cells = []
            for s in cfg["scenarios"]:
                above = r.get(f"{s}_cpu_above_relay")
                cells += [_mm(r[f"{s}_cpu"], 3), _mm(above, 3) if above else "–", _mm(r[f"{s}_rps"], 3)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- picture ------------------------------------------------------------------------------------------


def try_plot(result: dict[str, Any], png: Path) -> Path | None:
    """CPU per request by target (bar = median, dots = rounds) for each scenario, and the unloaded added
    latency over the relay; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.load.plot import COLORS

    fig_data = result["figures"]
    names = [t["name"] for t in result["targets"]]
    palette = {
        "relay": COLORS["relay"],
        "head": COLORS["embedded"],
        "head-aa": "#ffbb78",
        "head+hedge-armed": COLORS["pg-redis"],
    }
    colors = [palette.get(n, "#7f7f7f") for n in names]  # the baseline grey
    scenarios = result["config"]["scenarios"]
    fig, axes = plt.subplots(1, len(scenarios) + 1, figsize=(5 * (len(scenarios) + 1), 5), dpi=110)
    for ax, scenario in zip(axes, scenarios, strict=False):
        rows = fig_data["load"][scenario]
        for i, n in enumerate(names):
            med = rows[n]["cpu_us_per_req"]["median"]
            ax.bar(i, med, 0.6, color=colors[i], alpha=0.35 if n == "relay" else 0.8)
            ax.annotate(
                f"{med:,.0f}", (i, med), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
            )
            pts = [v for v in rows[n]["cpu_rounds"] if v is not None]
            ax.plot([i] * len(pts), pts, "k.", markersize=5)
        ax.set_title(
            f"CPU µs per {'stream' if is_stream(scenario) else 'request'} ({scenario})\n"
            "bar: median of rounds, dots: each round",
            fontsize=9.5,
        )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("+", "+\n") for n in names], fontsize=8)
    ax = axes[-1]
    width = 0.2
    for j, (kind, q) in enumerate((("chat", "p50"), ("chat", "p99"), ("stream", "p50"), ("stream", "p99"))):
        for i, n in enumerate(names):
            v = fig_data["probe"][n][kind].get(f"added_{q}_us")
            if v is not None:
                ax.bar(
                    i + (j - 1.5) * width,
                    v,
                    width * 0.95,
                    color=colors[i],
                    alpha=0.9 if q == "p50" else 0.45,
                    hatch="" if kind == "chat" else "//",
                )
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_title(
        "Unloaded added latency over relay, µs\n(chat p50, p99 | stream TTFT p50, p99 hatched)", fontsize=9.5
    )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("+", "+\n") for n in names], fontsize=8)
    env = result["environment"]
    fig.suptitle(
        f"A/B {result['when']}: head {env['dragonfly_commit']}{' (dirty)' if env['dragonfly_dirty'] else ''} "
        f"vs {result['ref']['given']} = {result['ref']['sha'][:7]}; {result['config']['rounds']} rounds × "
        f"{result['config']['duration_s']:g} s; {env['nproc']} cores, load average at start "
        f"{' '.join(env['loadavg_at_start'])}",
        fontsize=9.5,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png
