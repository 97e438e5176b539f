"""PNG plots of a report (`dragonfly simulate SCENARIO.toml --png DIR`) and of a weight sweep: drawn with
matplotlib's Agg backend (no display) from the report's data alone — the timeline buckets, the episodes
(bad periods) and the TTFT histograms — so a report read back from its JSON draws the same.

matplotlib is the `bench` extra (`pip install 'dragonfly[bench]'`); it is imported only when a plot is
asked for, and `PlotsUnavailable` says how to install it when it is missing.

Files, in DIR:

* `simulate-<scenario>.png`: the three below in one figure (what the README shows);
* `simulate-<scenario>-traffic.png`: each listing's share of its model's attempts over time (stacked),
  the listings' bad periods shaded;
* `simulate-<scenario>-ttft.png`: the TTFT distribution per profile (CDF, log time axis);
* `simulate-<scenario>-cost.png`: what each profile's buyers were charged, cumulated over time;
* `simulate-<scenario>-sweep-<target>.png` (a sweep): cost against TTFT per candidate, coloured by
  success rate, the Pareto front joined.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dragonfly.simulate.report import Report
    from dragonfly.simulate.sweep import SweepResult

__all__ = ["PlotsUnavailable", "plot_report", "plot_sweep"]

INSTALL_HINT = "install matplotlib (pip install 'dragonfly[bench]')"


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotsUnavailable(f"plots need matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    return importlib.import_module("matplotlib.pyplot")


def _time_axis(duration_s: float) -> tuple[float, str]:
    """Divisor and label for the time axis."""
    if duration_s >= 3 * 3600:
        return 3600.0, "simulated time (h)"
    if duration_s >= 180:
        return 60.0, "simulated time (min)"
    return 1.0, "simulated time (s)"


def _models(report: Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lid, x in report.listings.items():
        out.setdefault(x.model, []).append(lid)
    return out


def _draw_traffic(ax: Any, report: Report, model: str, listings: list[str]) -> None:
    timeline = report.timeline
    bucket_s = float(timeline["bucket_s"])
    div, label = _time_axis(report.duration_s)
    series = [timeline["listings"][lid]["legs"] for lid in listings]
    n = len(series[0]) if series else 0
    totals = [sum(s[i] for s in series) for i in range(n)]
    shares = [[(s[i] / totals[i]) if totals[i] else 0.0 for i in range(n)] for s in series]
    # Each bucket drawn over its whole span (a step), the last one repeated to close it.
    xs = [min(i * bucket_s, report.duration_s) / div for i in range(n + 1)]
    ax.stackplot(xs, [s[:n] + s[-1:] for s in shares], labels=listings, alpha=0.85, step="post")
    shaded = False
    for lid in listings:
        for e in report.listings[lid].episodes:
            ax.axvspan(
                e.start_s / div,
                e.end_s / div,
                facecolor="none",
                edgecolor="black",
                hatch="//",
                alpha=0.5,
                label=None if shaded else "bad period",
            )
            ax.annotate(
                lid,
                xy=(e.start_s / div, 1.0),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=7,
            )
            shaded = True
    ax.set_xlim(0, report.duration_s / div)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of attempts")
    ax.set_xlabel(label)
    ax.set_title(f"traffic share per listing: {model}")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)


def _draw_ttft(ax: Any, report: Report) -> None:
    drawn = False
    for pid, hist in report.ttft_histogram.items():
        counts, edges = hist["counts"], hist["edges_ms"]
        total = sum(counts)
        if not total:
            continue
        xs, ys, running = [edges[0]], [0.0], 0
        for count, upper in zip(counts, edges[1:], strict=True):
            running += count
            xs.append(upper)
            ys.append(running / total)
        ax.step(xs, ys, where="post", label=f"{pid} ({report.profiles[pid].strategy})")
        drawn = True
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("time to first token (ms, log)")
    ax.set_ylabel("share of completed requests")
    ax.set_title("TTFT distribution per profile (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend(loc="lower right", fontsize=8)


def _draw_cost(ax: Any, report: Report) -> None:
    timeline = report.timeline
    bucket_s = float(timeline["bucket_s"])
    div, label = _time_axis(report.duration_s)
    for pid, series in timeline["profiles"].items():
        running, ys = 0, []
        for micros in series["charge_micros"]:
            running += micros
            ys.append(running / 1e6)
        xs = [(i + 1) * bucket_s / div for i in range(len(ys))]
        ax.plot([0.0, *xs], [0.0, *ys], label=f"{pid} ({report.profiles[pid].strategy})")
    ax.set_xlim(0, report.duration_s / div)
    ax.set_xlabel(label)
    ax.set_ylabel("charged (USD)")
    ax.set_title("cumulative cost per profile")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """Write the report's plots into `out_dir` (made if missing); their paths."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"simulate-{report.scenario}"
    models = _models(report)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    rows = len(models) + 2
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows))
    for ax, (model, listings) in zip(axes, models.items(), strict=False):
        _draw_traffic(ax, report, model, listings)
    _draw_ttft(axes[-2], report)
    _draw_cost(axes[-1], report)
    fig.suptitle(f"dragonfly simulate: {report.scenario} (seed {report.seed})")
    fig.tight_layout()
    save(fig, f"{stem}.png")

    fig, axes = plt.subplots(len(models), 1, figsize=(10, 3.2 * len(models)), squeeze=False)
    for ax, (model, listings) in zip(axes[:, 0], models.items(), strict=True):
        _draw_traffic(ax, report, model, listings)
    fig.tight_layout()
    save(fig, f"{stem}-traffic.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    _draw_ttft(ax, report)
    fig.tight_layout()
    save(fig, f"{stem}-ttft.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    _draw_cost(ax, report)
    fig.tight_layout()
    save(fig, f"{stem}-cost.png")
    return written


def plot_sweep(result: SweepResult, out_dir: Path) -> Path:
    """Cost against TTFT for every candidate of a sweep, coloured by success rate; the front joined."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    inf = float("inf")
    points = [
        p for p in result.points if p.cost_per_mtok_usd is not None and p.ttft_ms(result.ttft) is not None
    ]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if points:
        success = [p.success_rate if p.success_rate is not None else 0.0 for p in points]
        low = min(min(success), 0.99)  # a colour scale even when every point succeeded
        sc = ax.scatter(
            [p.cost_per_mtok_usd for p in points],
            [p.ttft_ms(result.ttft) for p in points],
            c=success,
            vmin=low,
            vmax=1.0,
            cmap="viridis",
            s=18,
            alpha=0.7,
        )
        fig.colorbar(sc, ax=ax, label="success rate")
    front = sorted(
        (p for p in points if p.on_front),
        key=lambda p: (p.cost_per_mtok_usd or inf, p.ttft_ms(result.ttft) or inf),
    )
    if front:
        ax.plot(
            [p.cost_per_mtok_usd for p in front],
            [p.ttft_ms(result.ttft) for p in front],
            "o--",
            color="crimson",
            markerfacecolor="none",
            markersize=8,
            label="Pareto front",
        )
    current = next((p for p in points if p.label == "current"), None)
    if current is not None:
        ax.plot(
            [current.cost_per_mtok_usd],
            [current.ttft_ms(result.ttft)],
            marker="*",
            color="black",
            markersize=14,
            linestyle="none",
            label="current weights",
        )
    ax.set_xlabel("cost per 1M tokens (USD)")
    ax.set_ylabel(f"TTFT {result.ttft} (ms)")
    ax.set_title(f"weight sweep: {result.scenario}, {result.target} ({len(result.points)} candidates)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out_dir / f"simulate-{result.scenario}-sweep-{result.target}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
