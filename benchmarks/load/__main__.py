"""`python -m benchmarks.load run | gate | streams | profile | plot | summary | ab | paired`
(benchmarks/README.md)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from benchmarks.load import harness
from benchmarks.load.targets import ALL_TARGETS, OPTIONAL_TARGETS

F = TypeVar("F", bound=Callable[..., Any])


def _kept_run_options(kind: str) -> Callable[[F], F]:
    """--out, --runs-dir and --png of a run kept in benchmarks/runs/<kind>-<time>.json."""

    def decorate(f: F) -> F:
        f = click.option(
            "--png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: in --out."
        )(f)
        f = click.option(
            "--runs-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=harness.RESULTS.parent / "runs",
            show_default=True,
            help=f"Where the run's data is kept ({kind}-<time>.json).",
        )(f)
        return click.option(
            "--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True
        )(f)

    return decorate


@click.group()
@click.option(
    "--dragonfly-ref",
    default=None,
    help="Measure this commit (exported with git archive into the cache) instead of the working tree.",
)
def cli(dragonfly_ref: str | None) -> None:
    """Dragonfly load benchmarks: side-by-side run, latency gate, 2,000-stream scenario."""
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped by the `finally` blocks.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    if dragonfly_ref:
        from benchmarks.load import targets

        targets.DRAGONFLY_SRC = targets.export_ref(dragonfly_ref)
        click.echo(f"measuring Dragonfly from {dragonfly_ref} exported to {targets.DRAGONFLY_SRC}")


@cli.command()
@click.option(
    "--targets",
    default=",".join(ALL_TARGETS),
    show_default=True,
    help=f"Comma-separated; also: {', '.join(OPTIONAL_TARGETS)}.",
)
@click.option("--scenarios", default="chat,stream,stream-paced,embed", show_default=True)
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds per load run.")
@click.option("--rounds", type=int, default=2, show_default=True, help="Interleaved rounds per target.")
@click.option("--users", type=int, default=64, show_default=True, help="Connections, chat and embed.")
@click.option("--stream-users", type=int, default=16, show_default=True, help="Connections, stream.")
@click.option(
    "--stream-rate",
    type=float,
    default=400.0,
    show_default=True,
    help="Streams/s in all for stream-paced (Poisson arrivals over the stream connections).",
)
@click.option("--probe-count", type=int, default=2000, show_default=True, help="Concurrency-1 requests.")
@click.option("--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True)
def run(
    targets: str,
    scenarios: str,
    duration: float,
    rounds: int,
    users: int,
    stream_users: int,
    stream_rate: float,
    probe_count: int,
    out: Path,
) -> None:
    """Start every target, run the same load against each (interleaved), print a Markdown table."""
    cfg = harness.RunConfig(
        targets=[t.strip() for t in targets.split(",") if t.strip()],
        scenarios=[s.strip() for s in scenarios.split(",") if s.strip()],
        duration_s=min(duration, 120.0),
        rounds=max(1, min(rounds, 10)),
        users=users,
        stream_users=stream_users,
        stream_rate=stream_rate,
        probe_count=probe_count,
        out_dir=out,
    )
    harness.run(cfg)


@cli.command()
@click.option("--segment", type=float, default=8.0, show_default=True, help="Seconds per Locust segment.")
@click.option("--segments", type=int, default=2, show_default=True, help="Segments per target.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Total requests/s.")
@click.option("--users", type=int, default=20, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True)
def gate(segment: float, segments: int, rate: float, users: int, out: Path) -> None:
    """CI latency gate: Dragonfly embedded vs the relay floor and the seller, same run; exit 1 when two
    runs in a row fail."""
    from benchmarks.load import gate as gate_mod

    ok = gate_mod.gate_confirmed(
        lambda: gate_mod.gate(segment_s=segment, segments=segments, rate=rate, users=users, out_dir=out)
    )
    sys.exit(0 if ok else 1)


@cli.command()
@click.option("--n", type=int, default=2000, show_default=True, help="Concurrent streams.")
@click.option("--chunks", type=int, default=50, show_default=True)
@click.option("--chunk-delay", type=float, default=0.05, show_default=True, help="Seconds between chunks.")
@click.option(
    "--ramp", type=float, default=1.0, show_default=True, help="Seconds over which the streams start."
)
@click.option("--targets", default="direct,embedded", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True)
def streams(n: int, chunks: int, chunk_delay: float, ramp: float, targets: str, out: Path) -> None:
    """N concurrent streams through one data-plane worker: stretch, memory per stream, cancellation."""
    from benchmarks.load import streams as streams_mod

    streams_mod.main(
        n=n,
        chunks=chunks,
        chunk_delay_s=chunk_delay,
        ramp_s=ramp,
        target_names=targets.split(","),
        out_dir=out,
    )


@cli.command()
@click.option("--scenario", type=click.Choice(["chat", "stream", "embed"]), default="chat", show_default=True)
@click.option("--duration", type=float, default=15.0, show_default=True)
@click.option("--users", type=int, default=32, show_default=True)
@click.option("--rate-hz", type=int, default=250, show_default=True, help="py-spy sampling rate.")
@click.option("--gil/--all-threads", default=True, show_default=True, help="py-spy --gil or every thread.")
@click.option("--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True)
def profile(scenario: str, duration: float, users: int, rate_hz: int, gil: bool, out: Path) -> None:
    """py-spy the data-plane worker under load; print the hottest functions."""
    from benchmarks.load import profile as profile_mod

    profile_mod.profile(
        scenario=scenario, duration_s=min(duration, 120.0), users=users, rate_hz=rate_hz, out_dir=out, gil=gil
    )


@cli.command()
@click.option(
    "--ref", required=True, help="The baseline commit, e.g. 8f2f23e^ (checked out with git worktree)."
)
@click.option(
    "--head-ref",
    default=None,
    help="Run head (and aa) from this commit's worktree instead of the working tree, e.g. 63a7dcd.",
)
@click.option("--targets", default="relay,baseline,head,hedge", show_default=True, help="Comma-separated.")
@click.option("--scenarios", default="chat,stream", show_default=True)
@click.option("--duration", type=float, default=8.0, show_default=True, help="Seconds per load run.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds per target.")
@click.option("--users", type=int, default=64, show_default=True, help="Connections, chat.")
@click.option("--stream-users", type=int, default=16, show_default=True, help="Connections, stream.")
@click.option("--probe-count", type=int, default=1000, show_default=True, help="Concurrency-1 requests.")
@_kept_run_options("ab")
def ab(
    ref: str,
    head_ref: str | None,
    targets: str,
    scenarios: str,
    duration: float,
    rounds: int,
    users: int,
    stream_users: int,
    probe_count: int,
    out: Path,
    runs_dir: Path,
    png: Path | None,
) -> None:
    """Same-run A/B: the working tree (and a hedge-armed key) against REF's code, beside the relay floor."""
    from benchmarks.load import ab as ab_mod

    cfg = ab_mod.AbConfig(
        ref=ref,
        targets=[t.strip() for t in targets.split(",") if t.strip()],
        scenarios=[s.strip() for s in scenarios.split(",") if s.strip()],
        duration_s=min(duration, 120.0),
        rounds=max(1, min(rounds, 10)),
        users=users,
        stream_users=stream_users,
        probe_count=probe_count,
        out_dir=out,
        runs_dir=runs_dir,
        png=png,
        head_ref=head_ref,
    )
    try:
        ab_mod.run(cfg)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--ref", required=True, help="The baseline commit (checked out with git worktree).")
@click.option(
    "--head-ref", default=None, help="Run head (and aa) from this commit instead of the working tree."
)
@click.option("--targets", default="relay,baseline,head,aa", show_default=True, help="Comma-separated.")
@click.option("--scenario", type=click.Choice(["chat", "stream"]), default="chat", show_default=True)
@click.option(
    "--lanes", type=int, default=8, show_default=True, help="Client threads (each: one request at a time)."
)
@click.option("--block", type=float, default=5.0, show_default=True, help="Seconds per measured block.")
@click.option("--blocks", type=int, default=30, show_default=True)
@click.option("--warmup", type=float, default=5.0, show_default=True, help="Seconds before the first block.")
@_kept_run_options("paired")
def paired(
    ref: str,
    head_ref: str | None,
    targets: str,
    scenario: str,
    lanes: int,
    block: float,
    blocks: int,
    warmup: float,
    out: Path,
    runs_dir: Path,
    png: Path | None,
) -> None:
    """Paired A/B: every target gets the same requests in the same seconds; CPU ratios per block with a
    95 % interval (resolves differences of a few per cent where `ab`'s windows cannot)."""
    from benchmarks.load import paired as paired_mod

    cfg = paired_mod.PairedConfig(
        ref=ref,
        head_ref=head_ref,
        targets=[t.strip() for t in targets.split(",") if t.strip()],
        scenario=scenario,
        lanes=max(1, min(lanes, 32)),
        block_s=max(0.5, block),
        blocks=max(2, min(blocks, 1000)),
        warmup_s=max(0.0, warmup),
        out_dir=out,
        runs_dir=runs_dir,
        png=png,
    )
    try:
        paired_mod.run(cfg)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("latency-ab")
@click.option("--ref", required=True, help="The baseline commit (exported with git archive).")
@click.option("--targets", "kinds", default="embedded,pg-redis", show_default=True, help="Comma-separated.")
@click.option("--rounds", type=int, default=8, show_default=True, help="Interleaved rounds.")
@click.option("--count", type=int, default=2000, show_default=True, help="Requests per probe.")
@click.option("--out", type=click.Path(path_type=Path), default=harness.RESULTS, show_default=True)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=harness.RESULTS.parent / "runs",
    show_default=True,
    help="Where the run's data is kept (latency-ab-<time>.json).",
)
def latency_ab(ref: str, kinds: str, rounds: int, count: int, out: Path, runs_dir: Path) -> None:
    """Unloaded latency A/B: the working tree against REF, interleaved probes at concurrency 1."""
    from benchmarks.load import latency_ab as mod

    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(mod.KINDS))
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(mod.KINDS)}", param_hint="--targets")
    cfg = mod.LatencyAbConfig(
        ref=ref,
        kinds=chosen,
        rounds=max(1, min(rounds, 40)),
        count=max(100, count),
        out_dir=out,
        runs_dir=runs_dir,
    )
    mod.run(cfg)


@cli.command("plot")
@click.argument(
    "results", type=click.Path(exists=True, path_type=Path), default=harness.RESULTS, required=False
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the PNG (default: load.png beside the results.json).",
)
def plot_cmd(results: Path, png: Path | None) -> None:
    """Draw a run (a results.json or streams.json, a run directory, or the newest run under a directory):
    load.png (or --png), cpu.png and ttft.png beside it; stretch.png for a streams run."""
    from benchmarks.load import plot

    path = plot.find_results(results)
    data = plot.load(path)
    if plot.is_streams(data):
        written = [plot.plot_streams(data, png or path.with_name("stretch.png"))]
    else:
        written = plot.plot_all(data, (png or path).parent, load_png=png or path.with_name("load.png"))
    click.echo(f"{path} -> {', '.join(map(str, written))}")


@cli.command("summary")
@click.argument("results", type=click.Path(exists=True, path_type=Path), nargs=-1)
def summary_cmd(results: tuple[Path, ...]) -> None:
    """Print the summary table against the targets (benchmarks/load/goals.py) for past runs: a run's
    results.json, an A/B run's JSON (benchmarks/runs/ab-*.json) or a streams.json (default: the newest load
    run under benchmarks/results). With several, each row comes from the newest run that measured it."""
    from benchmarks.load import summary

    try:
        table = summary.render(summary.from_files(list(results) or [harness.RESULTS]))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(table, nl=False)


if __name__ == "__main__":
    cli()
