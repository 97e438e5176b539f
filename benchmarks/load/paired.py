"""`python -m benchmarks.load paired --ref REF`: a small CPU difference per request, resolved by pairing
every request (benchmarks/README.md, "Paired A/B").

`ab` measures each target in its own 8-second Locust window; on a shared 2-core machine the CPU per request
of one window differs from the next by 15–30 % (batching, neighbours, frequency), so a difference of a few
per cent cannot be seen in a handful of rounds. Here the targets are measured *at the same time*:

- `--lanes` client threads, each holding one keep-alive socket per target, send the same request to every
  target in turn (in a fresh seeded random order every cycle), waiting for each answer. Every target
  therefore gets the same number of requests, at the same concurrency, through the same seconds of machine
  noise.
- Every `--block` seconds each target's CPU is read from its process tree, in nanoseconds
  (`/proc/<pid>/task/<tid>/schedstat`, every thread of serve, control plane and gateway workers), and the
  block's CPU per request is paired across targets: head/baseline, head-aa/head (A/A: the noise between
  two servers of one code) and, with the relay, the ratio of what each spends above that floor.
- The ratios are summarised over blocks: mean with a 95 % bootstrap interval (seeded). A difference is
  "not measurable" when head/baseline's interval holds 1.0; its half-width is the run's resolution.

Targets are started exactly as `ab` starts them (a `git worktree` of REF with REF's native module —
`native_build`: built from REF when rust_core/ differs; the working tree, or `--head-ref`'s worktree, for
head and head-aa; the relay floor).
"""

from __future__ import annotations

import math
import os
import random
import socket
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import ab, harness, services, targets
from benchmarks.load.harness import preflight
from benchmarks.load.probe import _read_response, _request
from benchmarks.load.targets import Target

TARGETS = ("relay", "baseline", "head", "aa")
# As the Locust scenarios send them (locustfile.py): 64 tokens, a stream asks for its usage.
MESSAGES = [{"role": "user", "content": "Say something short."}]


def body(model: str, scenario: str) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 64}
    if scenario == "stream":
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return orjson.dumps(payload)


# --- CPU in nanoseconds -------------------------------------------------------------------------------


def tree_cpu_ns(root: int) -> tuple[int, int]:
    """On-CPU time of `root`'s process tree (schedstat, ns): every live thread, plus what its reaped
    children used (cutime + cstime, in clock ticks: coarse, and zero for a server tree that forks no
    short-lived children); and of the trees' main threads alone (tid = pid: the Python event loop of a
    Granian worker, of serve and of the control plane — where Dragonfly's per-request Python runs, without
    Granian's Tokio threads and the SQLite writer thread, whose share moves with how trades batch)."""
    total = main = 0
    for pid in services.tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as fh:
                    ns = int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            total += ns
            if tid == str(pid):
                main += ns
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            total += (int(fields[13]) + int(fields[14])) * 1_000_000_000 // services.CLK_TCK
        except (OSError, ValueError, IndexError):
            continue
    return total, main


def tree_cpu_ticks_ns(root: int) -> int:
    """The same from /proc/<pid>/stat (utime + stime + cutime + cstime): 10 ms ticks, but it keeps the
    time of threads that have exited. The run compares the two totals to show no thread's time was lost."""
    return int(services.cpu_seconds(services.tree(root)) * 1e9)


# --- the lanes ----------------------------------------------------------------------------------------


@dataclass
class Counts:
    ok: list[int]
    errors: list[int]


class Lanes:
    """`n` threads; each sends one request to each target in turn over its own keep-alive sockets."""

    def __init__(self, ts: list[Target], scenario: str, n: int) -> None:
        self.targets = ts
        self.n = n
        self.requests: list[tuple[str, int, bytes]] = []
        for t in ts:
            host, port = t.origin.split("://", 1)[1].rsplit(":", 1)
            req = _request(
                host, int(port), "/v1/chat/completions", t.api_key, body(t.models["chat"], scenario)
            )
            self.requests.append((host, int(port), req))
        self.counts = [Counts([0] * len(ts), [0] * len(ts)) for _ in range(n)]
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._lane, args=(i,), daemon=True) for i in range(n)]

    def start(self) -> Lanes:
        for th in self._threads:
            th.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(30)

    def totals(self) -> tuple[list[int], list[int]]:
        """Answers so far per target (ok, errors), summed over the lanes (each lane only adds to its own
        counters, so reading them unlocked is at worst one request behind)."""
        k = len(self.targets)
        ok = [sum(c.ok[j] for c in self.counts) for j in range(k)]
        err = [sum(c.errors[j] for c in self.counts) for j in range(k)]
        return ok, err

    def _lane(self, lane: int) -> None:
        k = len(self.targets)
        socks: list[socket.socket] = []
        bufs = [bytearray() for _ in range(k)]
        mine = self.counts[lane]
        try:
            for host, port, _ in self.requests:
                s = socket.create_connection((host, port), timeout=30)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks.append(s)
            # A fresh order every cycle (seeded per lane): no target always follows the same one, so
            # what one server leaves in the caches is not always charged to the same next one.
            rng = random.Random(lane)
            order = list(range(k))
            while not self._stop.is_set():
                rng.shuffle(order)
                for j in order:
                    socks[j].sendall(self.requests[j][2])
                    status = _read_response(socks[j], bufs[j])
                    if status == 200:
                        mine.ok[j] += 1
                    else:
                        mine.errors[j] += 1
        except BaseException as exc:  # a broken target ends the run: report it, do not hang
            self.failure = exc
            self._stop.set()
        finally:
            for s in socks:
                s.close()


# --- statistics ---------------------------------------------------------------------------------------


def bootstrap_mean_ci(xs: list[float], *, resamples: int = 10_000, seed: int = 1) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean (seeded: the same data gives the same interval)."""
    if len(xs) < 2:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(xs)
    means = sorted(sum(rng.choices(xs, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def summarise(xs: list[float]) -> dict[str, Any]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return {"n": 0}
    lo, hi = bootstrap_mean_ci(xs)
    mean = statistics.fmean(xs)
    return {
        "n": len(xs),
        "mean": mean,
        "median": statistics.median(xs),
        "ci95": [lo, hi],
        "resolution_pct": (hi - lo) / 2 * 100,  # half-width of the interval, in per cent of 1.0
        "holds_1": lo <= 1.0 <= hi,
        "min": min(xs),
        "max": max(xs),
    }


@dataclass
class Block:
    seconds: float
    requests: list[int]
    errors: list[int]
    cpu_ns: list[int]
    main_ns: list[int]  # the main threads' share (tree_cpu_ns)

    def cpu_us_per_req(self) -> list[float]:
        return [c / 1000 / r if r else float("nan") for c, r in zip(self.cpu_ns, self.requests, strict=True)]

    def main_us_per_req(self) -> list[float]:
        return [c / 1000 / r if r else float("nan") for c, r in zip(self.main_ns, self.requests, strict=True)]


@dataclass
class PairedConfig:
    ref: str
    head_ref: str | None
    targets: list[str]
    scenario: str
    lanes: int
    block_s: float
    blocks: int
    warmup_s: float
    out_dir: Path
    runs_dir: Path
    png: Path | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


PAIRS = (
    ("head / baseline", "head", "baseline"),
    ("head-aa / head (A/A)", "head-aa", "head"),
)


def ratios(names: list[str], blocks: list[Block]) -> dict[str, dict[str, Any]]:
    """Per pair: CPU per request, and (with the relay) CPU per request above the relay's, each paired
    within a block and summarised over the blocks."""
    idx = {n.split("@", 1)[0]: i for i, n in enumerate(names)}
    out: dict[str, dict[str, Any]] = {}
    for label, a, b in PAIRS:
        if a not in idx or b not in idx:
            continue
        ia, ib = idx[a], idx[b]
        cpu = [blk.cpu_us_per_req() for blk in blocks]
        main = [blk.main_us_per_req() for blk in blocks]
        row = {
            "cpu": summarise([c[ia] / c[ib] for c in cpu]),
            "cpu_main": summarise([c[ia] / c[ib] for c in main if c[ib] > 0]),
        }
        if "relay" in idx:
            ir = idx["relay"]
            row["cpu_above_relay"] = summarise(
                [(c[ia] - c[ir]) / (c[ib] - c[ir]) for c in cpu if c[ib] > c[ir]]
            )
        out[label] = row
    return out


# --- the run ------------------------------------------------------------------------------------------


def _measure(ts: list[Target], cfg: PairedConfig) -> tuple[list[Block], dict[str, Any]]:
    roots = [t.roots for t in ts]

    def cpu() -> list[tuple[int, int]]:
        out = []
        for rs in roots:
            readings = [tree_cpu_ns(r) for r in rs]
            out.append((sum(a for a, _ in readings), sum(m for _, m in readings)))
        return out

    def ticks() -> list[int]:
        return [sum(tree_cpu_ticks_ns(r) for r in rs) for rs in roots]

    lanes = Lanes(ts, cfg.scenario, cfg.lanes).start()
    blocks: list[Block] = []
    try:
        time.sleep(cfg.warmup_s)
        ok0, err0 = lanes.totals()
        cpu0, ticks0, t0 = cpu(), ticks(), time.monotonic()
        first_cpu, first_ticks = cpu0, ticks0
        for i in range(cfg.blocks):
            time.sleep(cfg.block_s)
            if lanes.failure is not None:
                raise RuntimeError(f"a lane failed: {type(lanes.failure).__name__}: {lanes.failure}")
            ok1, err1 = lanes.totals()
            cpu1, t1 = cpu(), time.monotonic()
            blk = Block(
                t1 - t0,
                [b - a for a, b in zip(ok0, ok1, strict=True)],
                [b - a for a, b in zip(err0, err1, strict=True)],
                [b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True)],
                [b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True)],
            )
            blocks.append(blk)
            per = blk.cpu_us_per_req()
            print(
                f"  block {i + 1:3d}/{cfg.blocks} {blk.requests[0] / blk.seconds:7.0f} req/s per target  "
                + "  ".join(f"{t.name}={v:6.1f}us" for t, v in zip(ts, per, strict=True)),
                flush=True,
            )
            ok0, err0, cpu0, t0 = ok1, err1, cpu1, t1
        last_ticks = ticks()
    finally:
        lanes.stop()
    check = {
        t.name: {
            "schedstat_s": (c1[0] - c0[0]) / 1e9,
            "stat_ticks_s": (k1 - k0) / 1e9,
        }
        for t, c0, c1, k0, k1 in zip(ts, first_cpu, cpu0, first_ticks, last_ticks, strict=True)
    }
    return blocks, check


def run(cfg: PairedConfig) -> dict[str, Any]:
    load_at_start = harness.loadavg()
    if targets.DRAGONFLY_SRC is not None:
        raise RuntimeError("paired measures the working tree against --ref: do not pass --dragonfly-ref too")
    if cfg.scenario not in ("chat", "stream"):
        raise RuntimeError(f"unknown scenario {cfg.scenario!r} (chat | stream)")
    sha = ab._git("rev-parse", "--verify", f"{cfg.ref}^{{commit}}")
    head_sha = ab._git("rev-parse", "--verify", f"{cfg.head_ref}^{{commit}}") if cfg.head_ref else None
    head_code = (
        {"sha": head_sha, "uncommitted": []}
        if head_sha
        else {
            "sha": ab._git("rev-parse", "HEAD"),
            "uncommitted": ab._git("status", "--porcelain", "--", "python", "rust_core").splitlines(),
        }
    )
    services.raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = cfg.out_dir / f"paired-{stamp}"
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs in {out_dir}", flush=True)
    wt = ab.Worktree(sha)
    head_wt = ab.Worktree(head_sha) if head_sha else None
    seller: Target | None = None
    started: list[Target] = []
    try:
        tree = wt.add()
        head_tree = head_wt.add() if head_wt is not None else None
        head_label = (
            f"git worktree of {head_wt.sha[:7]} + {head_wt.native}" if head_wt is not None else "working tree"
        )
        base_label = f"git worktree of {sha[:7]} + {wt.native}"
        seller = targets.start_fake_seller(log_dir)
        started = ab._start(cfg, log_dir, seller, tree, sha[:7], head_tree, head_label, base_label)  # type: ignore[arg-type]
        for t in started:
            why = preflight(t, cfg.scenario)
            if why:
                raise RuntimeError(f"{t.name} does not serve {cfg.scenario}: {why}")
        print(
            f"  {cfg.lanes} lanes × {len(started)} targets, {cfg.warmup_s:g} s warm-up, "
            f"{cfg.blocks} blocks × {cfg.block_s:g} s",
            flush=True,
        )
        blocks, check = _measure(started, cfg)
        names = [t.name for t in started]
        result: dict[str, Any] = {
            "kind": "paired",
            "when": stamp,
            "command": " ".join(["python", "-m", "benchmarks.load", *sys.argv[1:]]),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "ref": {"given": cfg.ref, "sha": sha},
            "head": head_code,
            "environment": harness.environment(load_at_start),
            "targets": [{"name": t.name, "code": t.extra.get("code", "working tree")} for t in started],
            "blocks": [
                asdict(b) | {"cpu_us_per_req": b.cpu_us_per_req(), "main_us_per_req": b.main_us_per_req()}
                for b in blocks
            ],
            "cpu_check": check,
            "cpu_us_per_req": {
                n: summarise([b.cpu_us_per_req()[i] for b in blocks]) for i, n in enumerate(names)
            },
            "main_us_per_req": {
                n: summarise([b.main_us_per_req()[i] for b in blocks]) for i, n in enumerate(names)
            },
            "ratios": ratios(names, blocks),
        }
        result = ab._clean(result)
        ab.keep_run(result, render(result), out_dir, cfg.runs_dir / f"paired-{stamp}.json")
        ab.draw(try_plot, result, cfg.png or out_dir / "paired.png")
        return result
    finally:
        for t in reversed(started):
            t.stop()
        if seller is not None:
            seller.stop()
        wt.remove()
        if head_wt is not None:
            head_wt.remove()


# --- report -------------------------------------------------------------------------------------------


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{nd}f}"


def _ratio_cell(s: dict[str, Any] | None) -> str:
    if not s or not s.get("n"):
        return "–"
    lo, hi = s["ci95"]
    return f"{_f(s['mean'])} [{_f(lo)}, {_f(hi)}] ±{_f(s['resolution_pct'], 1)} %"


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    cfg = result["config"]
    names = [t["name"] for t in result["targets"]]
    lines = [
        f"Paired A/B {result['when']}: `{result['command']}`",
        "",
        f"Machine: {env.get('host') or 'host ?'}, {env['nproc']} cores, {env['cpu']}, "
        f"kernel {env['kernel']}, load average at start {' '.join(env['loadavg_at_start'])}, "
        f"at end {' '.join(env['loadavg_at_end'])}. "
        f"Python {env['python']}, Granian {env['granian']}. Head {env['dragonfly_commit']}"
        f"{' + uncommitted changes' if env['dragonfly_dirty'] else ''}; baseline {result['ref']['given']} = "
        f"{result['ref']['sha'][:10]}. Scenario {cfg['scenario']}: {cfg['lanes']} lanes, each sending to "
        f"every target in turn; {cfg['blocks']} blocks × {cfg['block_s']:g} s after "
        f"{cfg['warmup_s']:g} s warm-up.",
        "",
        "| target | code | CPU µs/req (mean of blocks) | min–max | main threads µs/req | requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for i, n in enumerate(names):
        s = result["cpu_us_per_req"][n]
        m = result["main_us_per_req"][n]
        reqs = sum(b["requests"][i] for b in result["blocks"])
        errs = sum(b["errors"][i] for b in result["blocks"])
        lines.append(
            f"| {n} | {result['targets'][i]['code']} | {_f(s.get('mean'), 1)} | {_f(s.get('min'), 1)}–"
            f"{_f(s.get('max'), 1)} | {_f(m.get('mean'), 1)} | {reqs:,} | {errs} |"
        )
    lines += [
        "",
        "Ratios paired within each block: mean [95 % bootstrap interval] ± resolution:",
        "",
        "| ratio | CPU per request (whole tree) | above the relay | main threads only "
        "| within noise (tree / main: interval holds 1.0) |",
        "|---|---:|---:|---:|---|",
    ]
    for label, r in result["ratios"].items():
        held = ["yes" if r[k].get("holds_1") else "no" for k in ("cpu", "cpu_main")]
        lines.append(
            f"| {label} | {_ratio_cell(r['cpu'])} | {_ratio_cell(r.get('cpu_above_relay'))} | "
            f"{_ratio_cell(r['cpu_main'])} | {' / '.join(held)} |"
        )
    lost = {
        n: c
        for n, c in result["cpu_check"].items()
        if c["stat_ticks_s"] and c["schedstat_s"] < 0.97 * c["stat_ticks_s"]
    }
    lines += [
        "",
        "CPU check (schedstat of live threads vs /proc stat ticks over the whole run): "
        + (
            "agree within 3 %."
            if not lost
            else "schedstat low for " + ", ".join(lost) + " (threads exited: their time is missing)."
        ),
    ]
    return "\n".join(lines) + "\n"


def try_plot(result: dict[str, Any], png: Path) -> Path | None:
    """Left: CPU per request per block for every target (a line each). Middle and right: the paired
    ratios per block, whole process trees and main threads only, with their mean and 95 % interval."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t["name"] for t in result["targets"]]
    blocks = result["blocks"]
    fig, (left, *rights) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110)
    xs = list(range(1, len(blocks) + 1))
    for i, n in enumerate(names):
        left.plot(xs, [b["cpu_us_per_req"][i] for b in blocks], marker=".", label=n)
    left.set_xlabel("block")
    left.set_ylabel("CPU µs per request")
    left.set_title("CPU per request (whole tree), every target in the same seconds", fontsize=10)
    left.legend(fontsize=8)
    idx = {n.split("@", 1)[0]: i for i, n in enumerate(names)}
    for ax, (key, per_req, what) in zip(
        rights,
        (("cpu", "cpu_us_per_req", "whole process trees"), ("cpu_main", "main_us_per_req", "main threads")),
        strict=True,
    ):
        for k, (label, a, b) in enumerate(PAIRS):
            if a not in idx or b not in idx:
                continue
            rs = [blk[per_req][idx[a]] / blk[per_req][idx[b]] for blk in blocks]
            s = result["ratios"][label][key]
            line = ax.plot(xs, rs, marker=".", linestyle="none", label=label)[0]
            ax.axhline(s["mean"], color=line.get_color(), linewidth=1)
            ax.axhspan(s["ci95"][0], s["ci95"][1], color=line.get_color(), alpha=0.15)
            ax.annotate(
                f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]",
                (xs[-1], s["mean"]),
                xytext=(-4, 6 + 12 * k),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=line.get_color(),
            )
        ax.axhline(1.0, color="#333333", linewidth=0.8, linestyle="--")
        ax.set_xlabel("block")
        ax.set_title(f"Paired CPU ratio per block, {what}\n(line: mean, band: 95 % interval)", fontsize=10)
        ax.legend(fontsize=8)
    env = result["environment"]
    fig.suptitle(
        f"Paired A/B {result['when']} ({result['config']['scenario']}): head {env['dragonfly_commit']}"
        f"{' (dirty)' if env['dragonfly_dirty'] else ''} vs {result['ref']['given']} = "
        f"{result['ref']['sha'][:7]}; "
        f"{env['nproc']} cores, load average at start {' '.join(env['loadavg_at_start'])}",
        fontsize=9.5,
    )
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png
