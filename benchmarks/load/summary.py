"""The summary table: each figure of `goals.GOALS` from a run, beside its floor, with the ratio and whether
the target is met.

    python -m benchmarks.load summary [RESULTS ...]

RESULTS: a `run`'s results.json (or its directory), an `ab` run's JSON (`benchmarks/runs/ab-*.json`: its
relay and head targets stand for relay and embedded) or a `streams` run's streams.json; default the newest
run under benchmarks/results. With several files, each row comes from the newest file that measured it,
and the table says which.

Values are medians over the run's rounds, and ratios (and excesses) are paired within each round, then
the median is taken: a round's drift hits the floor and Dragonfly alike. Unloaded latency is paired within
each probe pass the same way. A run written before the harness kept per-round figures has only the
figures merged over its rounds: its rows say so. `run`, `streams` and `ab` are told apart by their shape.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.load import goals
from benchmarks.load.goals import GOALS, Goal
from benchmarks.load.stats import percentile

NOT_MEASURED = "not measured"
LABELS = {"run": "load run", "ab": "A/B run", "streams": "streams run"}


# --- reading a run ------------------------------------------------------------------------------------


def kind_of(result: dict[str, Any]) -> str:
    """ "run", "ab" or "streams"."""
    if result.get("kind") == "ab":
        return "ab"
    if result.get("kind") == "streams" or (
        isinstance(result.get("targets"), list) and "chunks" in result and "results" not in result
    ):
        return "streams"
    return "run"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return None if math.isnan(x) else float(x)


def _median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _names(result: dict[str, Any]) -> dict[str, str]:
    """Logical target (relay, embedded, direct…) → its name in this run."""
    if kind_of(result) == "ab":
        names = {t["name"] for t in result.get("targets", [])}
        out = {"relay": "relay"} if "relay" in names else {}
        if "head" in names:
            out["embedded"] = "head"
        return out
    present = {r["target"] for r in result.get("results", [])} | set(result.get("probe", {}))
    return {n: n for n in present}


def _per_round(result: dict[str, Any], target: str, scenario: str, field: str) -> list[float | None]:
    """The field of (target, scenario) in each round, or the merged figure alone (older runs)."""
    rounds = result.get("rounds")
    if rounds:
        out: list[float | None] = []
        for rnd in rounds:
            row = next(
                (r for r in rnd["results"] if r["target"] == target and r["scenario"] == scenario), None
            )
            out.append(_num(row.get(field)) if row else None)
        return out
    merged = result.get("merged") if kind_of(result) == "ab" else result.get("results")
    row = next((r for r in merged or [] if r["target"] == target and r["scenario"] == scenario), None)
    return [_num(row.get(field))] if row else []


def _probe_passes(result: dict[str, Any], target: str, field: str) -> list[float | None]:
    """Non-streamed unloaded probe: the field of each pass (run) or round (ab), in order."""
    p = result.get("probe", {}).get(target)
    if not p:
        return []
    passes = p.get("chat") if kind_of(result) == "ab" else p.get("all")
    if not passes:
        return [_num(p.get(field))]
    return [_num(q.get(field)) for q in passes]


def _paired(
    a: list[float | None], b: list[float | None], f: Callable[[float, float], float | None]
) -> float | None:
    vals = [f(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    return _median(vals)


def _has(xs: list[float | None]) -> bool:
    return any(x is not None for x in xs)


def _ratio(x: float, y: float) -> float | None:
    return x / y if y > 0 else None


# --- one row per goal ---------------------------------------------------------------------------------


def _row(goal: Goal, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": goal.key,
        "figure": goal.figure,
        "target": goal.target,
        "floor_name": goal.floor,
        "dragonfly_name": goal.subject,
        "unit": goal.unit,
        "floor": None,
        "dragonfly": None,
        "ratio": None,
        "excess": None,
        "met": None,
        "measured": False,
        "n": 0,
        "note": "",
    }
    row.update(kw)
    if row["measured"]:
        compared = (
            row["ratio"]
            if goal.kind in (goals.RATIO_MAX, goals.RATIO_MIN)
            else row["excess"]
            if goal.kind == goals.EXCESS_MAX
            else row["dragonfly"]
        )
        row["met"] = goals.met(goal, compared)
    return row


def _missing(goal: Goal, why: str) -> dict[str, Any]:
    return _row(goal, note=why)


def _load_row(result: dict[str, Any], goal: Goal) -> dict[str, Any]:
    names = _names(result)
    need = [goal.subject, goal.floor]
    if goal.key in ("stream_ttft_added", "unloaded_p50_pg_redis"):
        need.append("direct")
    absent = [n for n in need if n not in names]
    if absent:
        return _missing(goal, f"no {', '.join(absent)} in this run")
    subj, floor = names[goal.subject], names[goal.floor]
    if goal.key in ("chat_cpu", "chat_cpu_pg_redis", "stream_cpu", "rps_vs_litellm"):
        scenario = "stream" if goal.key == "stream_cpu" else "chat"
        field = "rps" if goal.key == "rps_vs_litellm" else "cpu_us_per_req"
        a, b = _per_round(result, subj, scenario, field), _per_round(result, floor, scenario, field)
        if not _has(a) or not _has(b):
            return _missing(goal, f"no {scenario} scenario for {subj} and {floor} in this run")
        return _row(
            goal,
            floor=_median(b),
            dragonfly=_median(a),
            ratio=_paired(a, b, _ratio),
            measured=True,
            n=min(len(a), len(b)),
        )
    if goal.key == "stream_ttft_added":
        d = _per_round(result, "direct", "stream", "ttft_p50_ms")
        a = _per_round(result, subj, "stream", "ttft_p50_ms")
        b = _per_round(result, floor, "stream", "ttft_p50_ms")
        if not (_has(a) and _has(b) and _has(d)):
            return _missing(goal, "no stream scenario for direct, relay and embedded in this run")
        added_a = [x - y if x is not None and y is not None else None for x, y in zip(a, d, strict=False)]
        added_b = [x - y if x is not None and y is not None else None for x, y in zip(b, d, strict=False)]
        return _row(
            goal,
            floor=_median(added_b),
            dragonfly=_median(added_a),
            ratio=_paired(added_a, added_b, _ratio),
            measured=True,
            n=min(len(a), len(b), len(d)),
        )
    # Unloaded latency, concurrency 1, paired within each probe pass.
    field = "p99_us" if goal.key == "unloaded_p99" else "p50_us"
    a, b = _probe_passes(result, subj, field), _probe_passes(result, floor, field)
    d = _probe_passes(result, "direct", field) if "direct" in names else []
    if not _has(a) or not _has(b):
        return _missing(goal, f"no unloaded probe of {subj} and {floor} in this run")
    n = min(len(a), len(b))
    if d:
        a = [x - y if x is not None and y is not None else None for x, y in zip(a, d, strict=False)]
        b = [x - y if x is not None and y is not None else None for x, y in zip(b, d, strict=False)]
        n = min(n, len(d))
    note = "" if d else "no direct in this run: floor and Dragonfly are absolute latencies, not added ones"
    if goal.kind == goals.EXCESS_MAX:
        excess = _paired(a, b, lambda x, y: x - y)
        return _row(
            goal, floor=_median(b), dragonfly=_median(a), excess=excess, measured=True, n=n, note=note
        )
    return _row(
        goal,
        floor=_median(b),
        dragonfly=_median(a),
        ratio=_paired(a, b, _ratio),
        measured=True,
        n=n,
        note=note,
    )


def _stream_outcomes(t: dict[str, Any]) -> tuple[list[float], int]:
    """(durations in ms of the streams that completed, how many did not)."""
    ok: list[float] = []
    bad = 0
    for s in t.get("samples", []):
        finished = s[3] == "ok" if len(s) > 3 else s[1] is not None
        if finished and s[2] is not None:
            ok.append(float(s[2]))
        else:
            bad += 1
    return ok, bad


def stretch_vs(t: dict[str, Any], reference_ms: float) -> list[float]:
    """Each stream's duration over `reference_ms`, minus 1 (a stream that did not complete: +inf)."""
    ok, bad = _stream_outcomes(t)
    return sorted([d / reference_ms - 1 for d in ok] + [math.inf] * bad)


def _streams_row(report: dict[str, Any], goal: Goal) -> dict[str, Any]:
    by = {t["target"]: t for t in report.get("targets", [])}
    n = int(report.get("n") or 0)
    note = "" if n == 2000 else f"{n} streams, not 2,000"
    if goal.key == "memory_per_stream":
        if "embedded" not in by:
            return _missing(goal, "no embedded in this run")
        floor = by.get("relay", {}).get("complete", {}).get("rss_per_stream_kib")
        value = _num(by["embedded"]["complete"].get("rss_per_stream_kib"))
        return _row(goal, floor=_num(floor), dragonfly=value, measured=value is not None, n=1, note=note)
    if "embedded" not in by or "direct" not in by:
        return _missing(goal, "needs direct and embedded in the same run")
    direct_ok, _ = _stream_outcomes(by["direct"])
    if not direct_ok:
        return _missing(goal, "no stream of direct completed")
    ref = statistics.median(direct_ok)

    def figure(t: dict[str, Any]) -> float | None:
        st = stretch_vs(t, ref)
        if not st:
            return None
        if goal.key == "streams_within_10pct":  # a stream that left no sample counts as out
            return 100 * sum(1 for s in st if s <= 0.10) / max(len(st), int(t.get("n") or 0))
        return 100 * percentile(st, 99)

    value = figure(by["embedded"])
    return _row(goal, floor=figure(by["direct"]), dragonfly=value, measured=value is not None, n=1, note=note)


def _source(result: dict[str, Any]) -> dict[str, Any]:
    kind = kind_of(result)
    env = result.get("environment", {})
    commit = env.get("dragonfly_commit", "?")
    if env.get("dragonfly_dirty") and env.get("dragonfly_src", "working tree") == "working tree":
        commit += " + uncommitted changes"
    if kind == "ab" and (result.get("head") or {}).get("sha") and result["config"].get("head_ref"):
        commit = f"{result['head']['sha'][:7]} (head of an A/B run)"
    elif kind == "ab":
        commit += " (head of an A/B run)"
    cfg = result.get("config", {})
    rounds = cfg.get("rounds")
    per_round = bool(result.get("rounds")) or kind == "streams"
    return {
        "kind": kind,
        "when": result.get("when", "?"),
        "date": env.get("date", ""),
        "commit": commit,
        "command": result.get("command", ""),
        "rounds": rounds,
        "per_round": per_round,
        "file": "",
    }


def compute(result: dict[str, Any]) -> dict[str, Any]:
    """The summary of one run: its source and one row per goal of its kind (figures it did not measure
    say why)."""
    kind = kind_of(result)
    rows = []
    for goal in GOALS:
        if kind == "streams":
            if goal.source == goals.STREAMS:
                rows.append(_streams_row(result, goal))
        elif goal.source == goals.RUN:
            rows.append(_load_row(result, goal))
    src = _source(result)
    for r in rows:
        r["source"] = 0
    return {"sources": [src], "rows": rows}


def combine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per goal, each from the newest summary that measured it (or not measured by any)."""
    order = sorted(range(len(summaries)), key=lambda i: summaries[i]["sources"][0]["when"], reverse=True)
    sources: list[dict[str, Any]] = []
    rows = []
    for goal in GOALS:
        pick = None
        for i in order:
            row = next((r for r in summaries[i]["rows"] if r["key"] == goal.key), None)
            if row is not None and row["measured"]:
                pick = (i, row)
                break
        if pick is None:
            rows.append({**_missing(goal, "not measured by these runs"), "source": None})
            continue
        i, row = pick
        src = summaries[i]["sources"][0]
        if src not in sources:
            sources.append(src)
        rows.append({**row, "source": sources.index(src)})
    return {"sources": sources, "rows": rows}


# --- rendering ----------------------------------------------------------------------------------------


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "ms":
        return f"{v:,.2f} ms"
    if unit in ("%", "KiB"):
        return "+∞ %" if math.isinf(v) else f"{v:,.1f} {unit}"
    if unit == "req/s" and abs(v) < 100:
        return f"{v:,.1f} {unit}"
    return f"{v:,.0f} {unit}"


def _compared(row: dict[str, Any]) -> str:
    if row["ratio"] is not None:
        return f"{row['ratio']:.2f}×"
    if row["excess"] is not None:
        sign = "+" if row["excess"] >= 0 else "−"
        return f"{sign}{_fmt(abs(row['excess']), row['unit'])}"
    return "–"


def _met(row: dict[str, Any]) -> str:
    if not row["measured"]:
        return NOT_MEASURED
    return {True: "**yes**", False: "**no**", None: "–"}[row["met"]]


def render(summary: dict[str, Any]) -> str:
    """The table as Markdown: the sources, the rows, then the notes."""
    sources = summary["sources"]
    many = len(sources) > 1
    mark = "abcdefghijklmnopqrstuvwxyz"
    lines = []
    for i, s in enumerate(sources):
        head = f"({mark[i]}) " if many else ""
        rounds = f"{s['rounds']} round(s), " if s.get("rounds") else ""
        if s["kind"] == "streams":
            how = "one pass per target"
        elif s["per_round"]:
            how = "medians over rounds, ratios paired within each round"
        else:
            how = (
                "load figures merged over the rounds (the run predates per-round data), unloaded latency "
                "paired within each probe pass"
            )
        where = f" [{s['file']}]" if s.get("file") else ""
        lines.append(
            f"{head}{LABELS.get(s['kind'], s['kind'])} {s['when']}{where} "
            f"({s['date'] or 'date not recorded'}), Dragonfly {s['commit']}: {rounds}{how}; `{s['command']}`"
        )
    lines += [
        "",
        "| figure | floor | Dragonfly | ratio | target | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    notes = []
    for row in summary["rows"]:
        figure = row["figure"] + (
            f" ({mark[row['source']]})" if many and row.get("source") is not None else ""
        )
        if not row["measured"]:
            lines.append(f"| {figure} | {row['floor_name']}: – | – | – | {row['target']} | {NOT_MEASURED} |")
            if row["note"]:
                notes.append(f"- {row['key']}: {NOT_MEASURED} ({row['note']})")
            continue
        lines.append(
            f"| {figure} | {row['floor_name']}: {_fmt(row['floor'], row['unit'])} "
            f"| {row['dragonfly_name']}: {_fmt(row['dragonfly'], row['unit'])} | {_compared(row)} "
            f"| {row['target']} | {_met(row)} |"
        )
        if row["note"]:
            notes.append(f"- {row['key']}: {row['note']}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


# --- files --------------------------------------------------------------------------------------------


def find(path: Path) -> Path:
    """A JSON file itself, the results.json or streams.json of a run directory, or the newest `load-*`
    run's under a results root."""
    if path.is_file():
        return path
    for name in ("results.json", "streams.json"):
        if (path / name).is_file():
            return path / name
    runs = sorted(path.glob("load-*/results.json"))
    if not runs:
        raise FileNotFoundError(f"no results.json or streams.json in {path} or its load-* directories")
    return runs[-1]


def from_files(paths: list[Path]) -> dict[str, Any]:
    summaries = []
    for p in paths:
        f = find(p)
        s = compute(json.loads(f.read_text()))
        s["sources"][0]["file"] = _shown(f)
        summaries.append(s)
    return summaries[0] if len(summaries) == 1 else combine(summaries)


def _shown(f: Path) -> str:
    try:
        return f.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(f)
