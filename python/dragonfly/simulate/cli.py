"""`dragonfly simulate SCENARIO.toml` (and `python -m dragonfly.simulate`): run a scenario, print the
report as a table, optionally write it as JSON. A scenario that cannot be read or is invalid exits 2
with its problems named by path, no traceback."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from dragonfly.simulate.engine import Engine
from dragonfly.simulate.progress import ProgressBar
from dragonfly.simulate.report import render_table
from dragonfly.simulate.scenario import ScenarioError, load_scenario

__all__ = ["simulate"]


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here."
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Run the scenario over this multiple of its time (its duration and every time in it).",
)
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: on a terminal).")
def simulate(
    scenario: Path, json_path: Path | None, seed: int | None, time_scale: float | None, progress: bool | None
) -> None:
    """Run SCENARIO (TOML) through the gateway's routing, health, audit, billing and pricing code in
    virtual time, and print the report."""
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    if time_scale is not None:
        sc = sc.scaled(time_scale)
    show = sys.stderr.isatty() if progress is None else progress
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
        json_path.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        click.echo(f"report written to {json_path}", err=True)
