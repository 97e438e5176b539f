"""A load run's results as one PNG: what each target adds, with the floor beside it.

    python -m benchmarks.load plot [RESULTS] [--png FILE]

RESULTS is a run's `results.json`, its directory, or a directory of runs (the newest `load-*` is taken;
default `benchmarks/results`). `run` draws the same picture into its own directory (`load.png`) when
matplotlib is installed. Four panels, one group of bars per target in a fixed order (direct, nginx, relay,
embedded, pg-redis, litellm; a target the run skipped keeps its place, marked "not run"):

- unloaded added latency, non-streamed chat, concurrency 1 (p50, p99; µs over direct);
- added time to first byte of a stream below saturation (`stream-paced`: p50, p99; ms over direct);
- CPU per request, chat, and CPU per stream, stream (µs; each bar labelled × nginx and × relay).

Besides `load.png`, `plot_all` draws `cpu.png` (CPU per request and per stream by target: median of the
rounds, each round a dot, the relay floor and the target lines) and `ttft.png` (the TTFT distribution of
each target as a CDF, saturated and paced streams, from the run's merged histograms); `plot_streams` draws
a `streams` run's `stretch.png` (per-stream duration against the seller's pace, a histogram per target).

The floor is drawn as dashed lines across each panel: nginx (a plain proxy) and relay (Granian with the
gateway's seller client and no Dragonfly logic — what the data-plane stack costs before any of its work).
Dotted red lines are the targets the README tracks (`goals.py`). The axes are linear and sized to the
targets near the floor: LiteLLM, one to two orders of magnitude above, is cut at the top with its value
printed. matplotlib is imported inside the functions, so this module imports without it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.load.goals import BY_KEY

ORDER = ("direct", "answer", "nginx", "relay", "embedded", "pg-redis", "litellm")
COLORS = {
    "direct": "#7f7f7f",
    "answer": "#bcbd22",
    "nginx": "#2ca02c",
    "relay": "#1f77b4",
    "embedded": "#ff7f0e",
    "pg-redis": "#d62728",
    "litellm": "#9467bd",
}
FLOORS = ("nginx", "relay")
# Targets an order of magnitude or two above the rest: cut at the top of the axis, value printed.
OFF_SCALE = ("litellm",)
# The targets benchmarks/README.md tracks, from their one definition (goals.py): unloaded added latency
# as an excess over the relay's (µs), CPU per request and per stream as a multiple of the relay's.
TARGET_ADDED_P50_OVER_RELAY_US = BY_KEY["unloaded_p50"].limit
TARGET_ADDED_P99_OVER_RELAY_US = BY_KEY["unloaded_p99"].limit
TARGET_CPU_X_RELAY = {"chat": BY_KEY["chat_cpu"].limit, "stream": BY_KEY["stream_cpu"].limit}
TARGET_CPU_X_RELAY_PG_REDIS = BY_KEY["chat_cpu_pg_redis"].limit


def find_results(path: Path) -> Path:
    """A JSON file itself, a run directory's `results.json` (or a `streams` run's `streams.json`), or the
    newest load run's under a results root."""
    if path.is_file():
        return path
    for name in ("results.json", "streams.json"):
        if (path / name).is_file():
            return path / name
    runs = sorted(p for p in path.glob("load-*/results.json"))
    if not runs:
        raise FileNotFoundError(f"no results.json in {path} or its load-* directories")
    return runs[-1]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(find_results(path).read_text())
    return data


def _num(x: Any) -> float | None:
    if isinstance(x, int | float) and not (isinstance(x, float) and math.isnan(x)):
        return float(x)
    return None


def _targets(result: dict[str, Any]) -> list[str]:
    """Every target the run was asked for, in the fixed order (unknown names last)."""
    asked = list(result.get("config", {}).get("targets") or ORDER)
    return [t for t in ORDER if t in asked] + [t for t in asked if t not in ORDER]


def _ran(result: dict[str, Any]) -> set[str]:
    return set(result.get("probe", {})) | {r["target"] for r in result.get("results", [])}


def _scenario(result: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in result.get("results", []) if r["scenario"] == scenario}


def _title(result: dict[str, Any]) -> str:
    env = result.get("environment", {})
    cfg = result.get("config", {})
    start = " ".join(env.get("loadavg_at_start") or []) or "?"
    end = " ".join(env.get("loadavg_at_end") or []) or "not recorded"
    cpu = (env.get("cpu") or "").replace("(R)", "").replace("(TM)", "")
    return (
        f"Dragonfly load run {result.get('when', '?')}  ·  commit {env.get('dragonfly_commit', '?')}"
        f"{_dirty(env)}  ·  "
        f"{cfg.get('duration_s', '?')} s × {cfg.get('rounds', '?')} round(s) per target and scenario\n"
        f"{env.get('host') or 'host ?'}: {env.get('nproc', '?')} cores, {cpu}  ·  "
        f"load average (1/5/15 min) at start {start}, at end {end}"
    )


def _dirty(env: dict[str, Any]) -> str:
    if env.get("dragonfly_src", "working tree") != "working tree":
        return " (exported ref)"
    return " + uncommitted changes" if env.get("dragonfly_dirty") else ""


def plot(result: dict[str, Any], png: Path) -> Path:
    """Draw `result` (a parsed results.json) into `png`; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _targets(result)
    ran = _ran(result)
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5), dpi=110)
    probe = result.get("probe", {})
    paced = _scenario(result, "stream-paced")
    relay = probe.get("relay", {})
    r50, r99 = _num(relay.get("added_p50_us")), _num(relay.get("added_p99_us"))
    _pair_panel(
        axes[0][0],
        names,
        ran,
        {n: (_num(p.get("added_p50_us")), _num(p.get("added_p99_us"))) for n, p in probe.items()},
        "Unloaded: added latency over direct, µs\n(non-streamed chat, concurrency 1, raw socket)",
        "µs",
        (
            r50 + TARGET_ADDED_P50_OVER_RELAY_US if r50 is not None else None,
            r99 + TARGET_ADDED_P99_OVER_RELAY_US if r99 is not None else None,
        ),
        "relay + {:.1f} ms",
    )
    _pair_panel(
        axes[0][1],
        names,
        ran,
        {n: (_num(r.get("added_ttft_p50_ms")), _num(r.get("added_ttft_p99_ms"))) for n, r in paced.items()},
        "Stream below saturation: added time to first byte over direct, ms\n"
        f"(stream-paced, {_rate(result)} streams/s over "
        f"{next(iter(paced.values()))['users'] if paced else '?'} connections)",
        "ms",
        (None, None),
    )
    _cpu_panel(axes[1][0], names, ran, _scenario(result, "chat"), "chat", "CPU per request, µs")
    _cpu_panel(axes[1][1], names, ran, _scenario(result, "stream"), "stream", "CPU per stream, µs")
    fig.suptitle(_title(result), fontsize=10.5, x=0.01, y=0.995, ha="left")
    fig.text(
        0.01,
        0.005,
        "Bars: each target's own process tree (the seller's CPU excluded). Dashed lines: the floor — "
        "nginx (plain proxy) and relay (Granian + the seller client, no Dragonfly logic).\n"
        "Dotted red: the targets benchmarks/README.md tracks. "
        "Shared machine: latency is noisy, CPU per request the steadier figure.",
        fontsize=8,
        color="#444444",
    )
    fig.tight_layout(rect=(0, 0.035, 1, 1))  # it leaves room for the suptitle itself
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png


def try_plot(result: dict[str, Any], png: Path) -> Path | None:
    """`plot` when matplotlib is installed; None (nothing written) when it is not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return plot(result, png)


def _rate(result: dict[str, Any]) -> str:
    rate = _num(result.get("config", {}).get("stream_rate"))
    return f"{rate:,.0f}" if rate is not None else "?"


def _fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _scale_top(values: dict[str, list[float]], lines: list[float]) -> tuple[float, float]:
    """(axis top, clip height). The axis is linear and sized to every target but LiteLLM, which is one to
    two orders of magnitude above the rest: a bar past the axis is cut and labelled with its value."""
    near = [v for n, vs in values.items() if n not in OFF_SCALE for v in vs] + lines
    top = max([*near, 0.0]) or max([v for vs in values.values() for v in vs] + [1.0])
    return top * 1.45, top * 1.3


def _bar(ax: Any, x: float, v: float, width: float, color: str, clip: float, label: str, **kw: Any) -> None:
    if v > clip:  # cut at the top of the axis: the value is written up the bar
        ax.bar(x, clip, width, color=color, edgecolor=color, **kw)
        ax.text(x, clip / 2, f"{label}  (off scale)", rotation=90, ha="center", va="center", fontsize=8.5)
        ax.annotate("▲", xy=(x, clip), xytext=(0, 1), textcoords="offset points", ha="center", fontsize=9)
        return
    ax.bar(x, v, width, color=color, edgecolor=color, **kw)
    ax.annotate(
        label,
        xy=(x, max(v, 0.0)),
        xytext=(0, 2),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=7.5,
    )


def _xticks(ax: Any, names: list[str], ran: set[str], have: set[str], baseline: bool = False) -> None:
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(range(len(names)))
    labels = []
    for n in names:
        if n not in ran:
            labels.append(f"{n}\n(not run)")
        elif n not in have:
            labels.append(f"{n}\n(no data)")
        elif n == "direct" and baseline:
            labels.append("direct\n(baseline: 0)")
        else:
            labels.append(n + ("\n(floor)" if n == "relay" else ""))
    ax.set_xticklabels(labels, fontsize=9)
    for tick, n in zip(ax.get_xticklabels(), names, strict=True):
        if n not in ran or n not in have:
            tick.set_color("#999999")


def _lines(
    ax: Any, floors: dict[str, float | None], targets: list[tuple[float, str]], unit: str
) -> list[Any]:
    """Dashed floor lines and dotted target lines across the panel; returns their legend handles."""
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    for name, y in floors.items():
        if y is None:
            continue
        ax.axhline(y, color=COLORS[name], linestyle="--", linewidth=1.1)
        what = f"{name} (floor)" if name == "relay" else name
        handles.append(Line2D([], [], color=COLORS[name], linestyle="--", label=f"{what}: {_fmt(y)} {unit}"))
    for y, label in targets:
        ax.axhline(y, color="#d62728", linestyle=":", linewidth=1.3)
        handles.append(Line2D([], [], color="#d62728", linestyle=":", label=label))
    return handles


def _empty(ax: Any, names: list[str], ran: set[str]) -> None:
    ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_yticks([])
    _xticks(ax, names, ran, set())


def _pair_panel(
    ax: Any,
    names: list[str],
    ran: set[str],
    values: dict[str, tuple[float | None, float | None]],
    title: str,
    unit: str,
    targets: tuple[float | None, float | None],
    target_label: str = "",
) -> None:
    """p50 (solid) and p99 (hatched) bars per target, over direct (so direct itself is the zero line).
    `target_label` formats each target line's label from the limit over the floor, in ms."""
    from matplotlib.patches import Patch

    ax.set_title(title, fontsize=10)
    have = {n for n, (a, b) in values.items() if a is not None or b is not None}
    if not have - {"direct"}:
        _empty(ax, names, ran)
        return
    t50, t99 = targets
    over = {"p50": TARGET_ADDED_P50_OVER_RELAY_US, "p99": TARGET_ADDED_P99_OVER_RELAY_US}
    target_lines = [
        (t, f"target {q} ≤ {target_label.format(over[q] / 1000) if target_label else ''} = {_fmt(t)} {unit}")
        for t, q in ((t50, "p50"), (t99, "p99"))
        if t
    ]
    top, clip = _scale_top(
        {n: [v for v in values[n] if v is not None] for n in have if n != "direct"},
        [t for t, _ in target_lines],
    )
    width = 0.38
    for i, n in enumerate(names):
        if n == "direct":
            continue  # the baseline: zero by definition
        color = COLORS.get(n, "#333333")
        for j, v in enumerate(values.get(n, (None, None))):
            if v is not None:
                x = i + (j - 0.5) * width
                style: dict[str, Any] = {"alpha": 0.45, "hatch": "//"} if j else {}
                _bar(ax, x, v, width * 0.95, color, clip, _fmt(v), **style)
    ax.axhline(0, color="#333333", linewidth=0.8)
    handles = [
        Patch(facecolor="#888888", edgecolor="#888888", label="p50"),
        Patch(facecolor="#888888", edgecolor="#888888", alpha=0.45, hatch="//", label="p99"),
    ]
    handles += _lines(ax, {n: values.get(n, (None, None))[0] for n in FLOORS}, target_lines, unit)
    bottom = min([0.0, *(v for n in have for v in values[n] if v is not None)])
    ax.set_ylim(bottom * 1.3, top)
    ax.set_ylabel(unit)
    ax.legend(handles=handles, loc="upper left", fontsize=7.5, ncol=2, frameon=False)
    _xticks(ax, names, ran, have, baseline=True)


def _cpu_panel(
    ax: Any, names: list[str], ran: set[str], rows: dict[str, dict[str, Any]], scenario: str, ylabel: str
) -> None:
    """CPU per request of each target's own process tree, labelled as a multiple of nginx and relay."""
    users = next(iter(rows.values()))["users"] if rows else "?"
    ax.set_title(f"{ylabel} ({scenario}, {users} closed-loop connections, saturated)", fontsize=10)
    cpu = {n: v for n, r in rows.items() if (v := _num(r.get("cpu_us_per_req"))) is not None}
    if not cpu:
        _empty(ax, names, ran)
        return
    target_lines = []
    if cpu.get("relay"):
        x = TARGET_CPU_X_RELAY[scenario]
        target_lines.append((x * cpu["relay"], f"target ≤ {x:g}× relay (embedded)"))
        if scenario == "chat" and "pg-redis" in cpu:
            x = TARGET_CPU_X_RELAY_PG_REDIS
            target_lines.append((x * cpu["relay"], f"target ≤ {x:g}× relay (pg-redis)"))
    top, clip = _scale_top({n: [v] for n, v in cpu.items()}, [t for t, _ in target_lines])
    for i, n in enumerate(names):
        v = cpu.get(n)
        if v is None:
            continue
        ratios = [f"{v / cpu[f]:.1f}× {f}" for f in FLOORS if f != n and cpu.get(f) and n != "direct"]
        _bar(ax, i, v, 0.6, COLORS.get(n, "#333333"), clip, "\n".join([_fmt(v), *ratios]))
    handles = _lines(ax, {n: cpu.get(n) for n in FLOORS}, target_lines, "µs")
    ax.set_ylim(0, top * 1.1)
    ax.set_ylabel("µs")
    ax.legend(handles=handles, loc="upper left", fontsize=7.5, frameon=False)
    _xticks(ax, names, ran, set(cpu))


# --- the summary's pictures: CPU by target, TTFT distributions, the many-streams stretch ----------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, png: Path) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    _pyplot().close(fig)
    return png


def _round_values(result: dict[str, Any], target: str, scenario: str, field: str) -> list[float]:
    out = []
    for rnd in result.get("rounds") or []:
        for r in rnd["results"]:
            if r["target"] == target and r["scenario"] == scenario and (v := _num(r.get(field))) is not None:
                out.append(v)
    return out


def plot_cpu(result: dict[str, Any], png: Path) -> Path:
    """CPU per request (chat) and per stream (stream) by target: the bar is the median of the rounds (the
    merged figure for a run without per-round data), each round a dot; the relay floor dashed, the targets
    (× relay) dotted red."""
    import statistics

    plt = _pyplot()
    names = _targets(result)
    ran = _ran(result)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), dpi=110)
    for ax, scenario, what in zip(axes, ("chat", "stream"), ("request", "stream"), strict=True):
        rows = _scenario(result, scenario)
        users = next(iter(rows.values()))["users"] if rows else "?"
        ax.set_title(f"CPU per {what}, µs ({scenario}, {users} closed-loop connections)", fontsize=10)
        cpu: dict[str, float] = {}
        dots: dict[str, list[float]] = {}
        for n, r in rows.items():
            per = _round_values(result, n, scenario, "cpu_us_per_req")
            v = statistics.median(per) if per else _num(r.get("cpu_us_per_req"))
            if v is not None:
                cpu[n], dots[n] = v, per
        if not cpu:
            _empty(ax, names, ran)
            continue
        target_lines = []
        if cpu.get("relay"):
            x = TARGET_CPU_X_RELAY[scenario]
            target_lines.append((x * cpu["relay"], f"target ≤ {x:g}× relay (embedded)"))
            if scenario == "chat" and "pg-redis" in cpu:
                target_lines.append(
                    (
                        TARGET_CPU_X_RELAY_PG_REDIS * cpu["relay"],
                        f"target ≤ {TARGET_CPU_X_RELAY_PG_REDIS:g}× relay (pg-redis)",
                    )
                )
        top, clip = _scale_top({n: [v] for n, v in cpu.items()}, [t for t, _ in target_lines])
        for i, n in enumerate(names):
            v = cpu.get(n)
            if v is None:
                continue
            ratio = (
                f"\n{v / cpu['relay']:.2f}× relay"
                if cpu.get("relay") and n not in ("relay", "direct")
                else ""
            )
            _bar(ax, i, v, 0.6, COLORS.get(n, "#333333"), clip, _fmt(v) + ratio, alpha=0.8)
            pts = [min(p, clip) for p in dots.get(n, [])]
            ax.plot([i] * len(pts), pts, "k.", markersize=5)
        handles = _lines(ax, {"relay": cpu.get("relay")}, target_lines, "µs")
        ax.set_ylim(0, top * 1.1)
        ax.set_ylabel("µs")
        ax.legend(handles=handles, loc="upper left", fontsize=7.5, frameon=False)
        _xticks(ax, names, ran, set(cpu))
    fig.suptitle(_title(result), fontsize=10, x=0.01, y=0.995, ha="left")
    fig.text(
        0.01,
        0.005,
        "Bar: median over rounds; dots: each round. Each target's own process tree (the seller's CPU "
        "excluded; pg-redis includes PostgreSQL and Redis). Targets from benchmarks/load/goals.py.",
        fontsize=8,
        color="#444444",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, png)


def _cdf(hist: dict[str, int]) -> tuple[list[float], list[float]]:
    """(values in ms, cumulative share) of a µs bucket → count histogram, as steps."""
    items = sorted((int(k), int(v)) for k, v in hist.items())
    total = sum(v for _, v in items) or 1
    xs: list[float] = [items[0][0] / 1000] if items else []
    ys: list[float] = [0.0] if items else []
    seen = 0
    for k, v in items:
        seen += v
        xs.append(k / 1000)
        ys.append(seen / total)
    return xs, ys


def plot_ttft(result: dict[str, Any], png: Path) -> Path:
    """The TTFT distribution of each target as a CDF (log time axis): saturated streams (`stream`) and
    streams below saturation (`stream-paced`), from the run's merged per-request histograms."""
    plt = _pyplot()
    hists = result.get("ttft_hist") or {}
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), dpi=110)
    for ax, scenario in zip(axes, ("stream", "stream-paced"), strict=True):
        rows = _scenario(result, scenario)
        users = next(iter(rows.values()))["users"] if rows else "?"
        how = "saturated" if scenario == "stream" else f"Poisson arrivals, {_rate(result)} streams/s"
        detail = f": {users} connections, {how}" if rows else ""
        ax.set_title(f"Time to first byte, CDF ({scenario}{detail})", fontsize=10)
        by_target = hists.get(scenario) or {}
        if not by_target:
            why = "no per-request TTFT kept by this run" if rows else "not measured in this run"
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for n in [t for t in ORDER if t in by_target] + [t for t in by_target if t not in ORDER]:
            xs, ys = _cdf(by_target[n])
            p50 = _num(rows.get(n, {}).get("ttft_p50_ms"))
            label = f"{n}: p50 {_fmt(p50)} ms" if p50 is not None else n
            ax.step(xs, ys, where="post", color=COLORS.get(n, "#333333"), label=label, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("share of streams")
        ax.set_ylim(0, 1.01)
        for q in (0.5, 0.99):
            ax.axhline(q, color="#999999", linestyle=":", linewidth=0.8)
        ax.grid(True, which="major", axis="x", color="#dddddd")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.suptitle(_title(result), fontsize=10, x=0.01, y=0.995, ha="left")
    fig.tight_layout()
    return _save(fig, png)


def plot_all(result: dict[str, Any], out_dir: Path, load_png: Path | None = None) -> list[Path]:
    """Every picture of a load run: load.png (or `load_png`), cpu.png and ttft.png in `out_dir`."""
    return [
        plot(result, load_png or out_dir / "load.png"),
        plot_cpu(result, out_dir / "cpu.png"),
        plot_ttft(result, out_dir / "ttft.png"),
    ]


def try_plot_all(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """`plot_all` when matplotlib is installed; [] (nothing written) when it is not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    return plot_all(result, out_dir)


def is_streams(data: dict[str, Any]) -> bool:
    """A `streams` run's streams.json (not a load run's results.json)."""
    return isinstance(data.get("targets"), list) and "chunks" in data and "results" not in data


def plot_streams(report: dict[str, Any], png: Path) -> Path:
    """Per-stream stretch against the seller's pace ((chunks − 1) × delay), a histogram per target, with
    the +10 % line and each target's share within it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    nominal_ms = (int(report["chunks"]) - 1) * float(report["chunk_delay_s"]) * 1000
    series: dict[str, list[float]] = {}
    for t in report["targets"]:
        vals = []
        for s in t.get("samples", []):
            done = s[3] == "ok" if len(s) > 3 else s[1] is not None
            if done and s[2] is not None:
                vals.append((float(s[2]) / nominal_ms - 1) * 100)
        series[t["target"]] = vals
    every = [v for vs in series.values() for v in vs]
    if not every:
        ax.text(0.5, 0.5, "no completed stream in this run", ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = min([*every, 0.0]), max([*every, 15.0])
        bins = [lo + (hi - lo) * i / 80 for i in range(81)]
        for name, vals in series.items():
            n = next(int(t["n"]) for t in report["targets"] if t["target"] == name)
            within = 100 * sum(1 for v in vals if v <= 10) / n if n else 0.0
            ax.hist(
                vals,
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=COLORS.get(name, "#333333"),
                label=f"{name}: {len(vals)}/{n} completed, {within:.1f} % within +10 % of the seller's pace",
            )
        ax.axvline(10, color="#d62728", linestyle=":", linewidth=1.3, label="+10 % of the seller's pace")
        direct = sorted(series.get("direct", []))
        if direct:  # the summary's criterion: within 10 % of direct's median duration
            at = ((1 + direct[len(direct) // 2] / 100) * 1.1 - 1) * 100
            ax.axvline(at, color="#7f7f7f", linestyle="--", linewidth=1.1, label="+10 % of direct's median")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)
        ax.set_xlabel("stretch: stream duration over the seller's pace, % (request sent → [DONE])")
        ax.set_ylabel("streams (log scale)")
        ax.legend(loc="upper right", fontsize=8.5, frameon=False)
    env = report.get("environment", {})
    load = " ".join(env.get("loadavg_at_start") or report.get("loadavg") or []) or "?"
    delay_ms = float(report["chunk_delay_s"]) * 1000
    ax.set_title(
        f"{report['n']} concurrent streams × {report['chunks']} chunks at {delay_ms:.0f} ms "
        f"(seller: {nominal_ms / 1000:.2f} s per stream), started over {report.get('ramp_s', '?')} s\n"
        f"run {report.get('when', '?')}, commit {env.get('dragonfly_commit', '?')}"
        f"{_dirty(env) if env else ''}, load average at start {load}",
        fontsize=9.5,
    )
    fig.tight_layout()
    return _save(fig, png)


def try_plot_streams(report: dict[str, Any], png: Path) -> Path | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return plot_streams(report, png)
