"""`dragonfly simulate SCENARIO.toml` (and `python -m dragonfly.simulate`): run a scenario, print the
report as a table, optionally write it as JSON and draw it as PNG plots; or sweep one strategy's (or
profile's) weights and print the Pareto front. A scenario that cannot be read or is invalid exits 2
with its problems named by path, no traceback.

`dragonfly simulate apply-weights --strategy S --weights price=…,latency=… --url URL` writes weights to a
control plane (apply.py)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from dragonfly.native.market import FEATURES, OPERATOR_STRATEGIES
from dragonfly.simulate.apply import ApplyError, check_strategy, parse_weights, put_weights
from dragonfly.simulate.engine import Engine
from dragonfly.simulate.progress import ProgressBar
from dragonfly.simulate.report import render_table
from dragonfly.simulate.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["simulate"]


class _DefaultRun(click.Group):
    """`simulate SCENARIO.toml …` is `simulate run SCENARIO.toml …`; `simulate apply-weights …` the other
    command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRun)
def simulate() -> None:
    """The operator's market simulator: `dragonfly simulate SCENARIO.toml [options]` runs a scenario
    (`dragonfly simulate run --help`); `apply-weights` writes chosen weights to a control plane."""


def _csv_floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated numbers expected") from None
    if not values or any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise click.BadParameter("levels must be non-negative numbers, one of them positive")
    return values


def _load(path: Path, seed: int | None, time_scale: float | None) -> Scenario:
    try:
        sc = load_scenario(path)
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    if time_scale is not None:
        sc = sc.scaled(time_scale)
    return sc


def _write_json(path: Path, data: dict[str, Any], what: str) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")
    click.echo(f"{what} written to {path}", err=True)


@simulate.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here."
)
@click.option(
    "--png",
    "--plots",
    "png_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Draw the plots (PNG) into this directory (needs matplotlib: the bench extra).",
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed (and the sweep's).")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Run the scenario over this multiple of its time (its duration and every time in it).",
)
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: on a terminal).")
@click.option(
    "--sweep",
    "sweep_target",
    metavar="STRATEGY_OR_PROFILE",
    default=None,
    help="Search weights for a built-in strategy (the operator's weights) or a profile (as custom).",
)
@click.option("--grid", is_flag=True, help="Sweep: every combination of --levels over the --vary weights.")
@click.option(
    "--random", "random_n", type=click.IntRange(min=1), default=None, help="Sweep: N random vectors."
)
@click.option(
    "--levels",
    default="0,0.25,0.5,1",
    show_default=True,
    help="Sweep --grid: the values each weight takes (vectors are normalised, deduplicated).",
)
@click.option(
    "--vary",
    default=",".join(FEATURES),
    show_default=True,
    help="Sweep: the weights to vary (the others are 0).",
)
@click.option(
    "--ttft",
    type=click.Choice(["p50", "p99"]),
    default="p50",
    show_default=True,
    help="Sweep: the TTFT percentile the front minimises.",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Sweep: processes.")
@click.option("--all", "all_points", is_flag=True, help="Sweep: list every point, not only the front.")
def run_command(
    scenario: Path,
    json_path: Path | None,
    png_dir: Path | None,
    seed: int | None,
    time_scale: float | None,
    progress: bool | None,
    sweep_target: str | None,
    grid: bool,
    random_n: int | None,
    levels: str,
    vary: str,
    ttft: str,
    jobs: int,
    all_points: bool,
) -> None:
    """Run SCENARIO (TOML) through the gateway's routing, health, audit, billing and pricing code in
    virtual time, and print the report; with --sweep, search weights and print the Pareto front."""
    sc = _load(scenario, seed, time_scale)
    show = sys.stderr.isatty() if progress is None else progress
    if sweep_target is not None or grid or random_n is not None:
        _sweep(
            sc, sweep_target, grid, random_n, levels, vary, ttft, jobs, all_points, json_path, png_dir, show
        )
        return
    engine = Engine(sc, progress=ProgressBar() if show else None)
    started = time.perf_counter()
    report = engine.run()
    elapsed = time.perf_counter() - started
    click.echo(render_table(report))
    rate = report.trades / elapsed if elapsed > 0 else 0.0
    click.echo(
        f"{report.requests:,} requests, {report.trades:,} trades simulated in {elapsed:.2f} s "
        f"({rate:,.0f} trades/s)",
        err=True,
    )
    if json_path is not None:
        _write_json(json_path, report.to_dict(), "report")
    if png_dir is not None:
        from dragonfly.simulate.plots import PlotsUnavailable, plot_report

        try:
            paths = plot_report(report, png_dir)
        except PlotsUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        for p in paths:
            click.echo(f"plot written to {p}", err=True)


def _sweep(
    sc: Scenario,
    target: str | None,
    grid: bool,
    random_n: int | None,
    levels: str,
    vary: str,
    ttft: str,
    jobs: int,
    all_points: bool,
    json_path: Path | None,
    png_dir: Path | None,
    show: bool,
) -> None:
    from dragonfly.simulate.sweep import (
        SweepError,
        grid_candidates,
        random_candidates,
        render_sweep,
        run_sweep,
    )

    if target is None:
        raise click.UsageError("--grid and --random go with --sweep STRATEGY_OR_PROFILE")
    if grid == (random_n is not None):
        raise click.UsageError("--sweep needs one of --grid or --random N")
    features = tuple(f.strip() for f in vary.split(",") if f.strip())
    if png_dir is not None:  # fail before the runs, not after
        from dragonfly.simulate.plots import PlotsUnavailable, _pyplot

        try:
            _pyplot()
        except PlotsUnavailable as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    def tick(done: int, total: int) -> None:
        click.echo(f"\rsweep: {done}/{total} runs", err=True, nl=done == total)

    started = time.perf_counter()
    try:
        candidates = (
            grid_candidates(_csv_floats(levels), features)
            if grid
            else random_candidates(random_n or 0, sc.seed, features)
        )
        result = run_sweep(
            sc,
            target,
            candidates,
            ttft="p99" if ttft == "p99" else "p50",
            jobs=jobs,
            progress=tick if show else None,
        )
    except SweepError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    elapsed = time.perf_counter() - started
    click.echo(f"{len(result.points)} runs in {elapsed:.1f} s", err=True)
    click.echo(render_sweep(result, all_points=all_points))
    others = [p for p in result.front if p.label != "current"]
    if target in OPERATOR_STRATEGIES and others:
        pick = min(others, key=lambda p: p.objectives(result.ttft))
        weights = ",".join(f"{k}={v:g}" for k, v in pick.weights.items() if v)
        click.echo(
            f"\nto apply a front point, e.g. #{pick.label}: dragonfly simulate apply-weights "
            f"--strategy {target} --weights {weights} --url URL"
        )
    if json_path is not None:
        _write_json(json_path, result.to_dict(), "sweep")
    if png_dir is not None:
        from dragonfly.simulate.plots import plot_sweep

        click.echo(f"plot written to {plot_sweep(result, png_dir)}", err=True)


@simulate.command("apply-weights")
@click.option(
    "--strategy",
    required=True,
    help=f"The built-in strategy whose global weights to set ({', '.join(OPERATOR_STRATEGIES)}).",
)
@click.option("--weights", required=True, help="name=value,… over " + ", ".join(FEATURES) + " (missing = 0).")
@click.option("--url", required=True, help="The control plane's origin, e.g. http://127.0.0.1:8000.")
@click.option(
    "--token-env",
    default="DRAGONFLY_OPERATOR_TOKEN",
    show_default=True,
    help="The environment variable holding an operator session token (never passed on the command line).",
)
def apply_weights(strategy: str, weights: str, url: str, token_env: str) -> None:
    """Write one strategy's weights through PUT /api/admin/routing/weights and print the server's answer
    (every strategy's weights); a refusal exits 1 with the server's message."""
    try:
        parsed = parse_weights(weights)

        check_strategy(strategy)
    except ApplyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    token = os.environ.get(token_env, "").strip()
    if not token:
        click.echo(f"error: set {token_env} to an operator session token (POST /api/auth/login)", err=True)
        sys.exit(2)
    try:
        answer = put_weights(url, token, strategy, parsed)
    except ApplyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(answer, indent=1, sort_keys=False))
