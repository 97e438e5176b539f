"""The load benchmarks' summary table (benchmarks/load/summary.py, targets in goals.py): medians over rounds,
ratios paired within each round, met / not met against each target, "not measured" for what a run lacks;
and the harness's plots write PNG files (skipped without matplotlib)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load import goals, plot, summary  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(target: str, scenario: str, **fields: float) -> dict[str, Any]:
    return {"target": target, "scenario": scenario, "users": 64 if scenario == "chat" else 16, **fields}


def _probe(*p50_p99: tuple[float, float]) -> dict[str, Any]:
    passes = [
        {"count": 100, "errors": 0, "p50_us": a, "p90_us": a, "p99_us": b, "mean_us": a} for a, b in p50_p99
    ]
    return {
        "passes": len(passes),
        "p50_us": min(a for a, _ in p50_p99),
        "p99_us": min(b for _, b in p50_p99),
        "all": passes,
    }


def _run() -> dict[str, Any]:
    """Three rounds: relay 100/110/90 µs per chat request, embedded 150/200/140 (ratios 1.5, 1.82, 1.56);
    streams relay 200 each round, embedded 300/330/310; pg-redis 240/260/300 per chat request."""
    rounds = []
    chat = {"relay": (100, 110, 90), "embedded": (150, 200, 140), "pg-redis": (240, 260, 300)}
    rps = {"embedded": (3000, 3300, 3100), "litellm": (50, 60, 100)}
    stream = {"relay": (200, 200, 200), "embedded": (300, 330, 310)}
    ttft = {"direct": (1.0, 1.0, 1.0), "relay": (3.0, 2.0, 3.0), "embedded": (4.0, 4.0, 7.0)}
    for i in range(3):
        results = [
            _row(t, "chat", cpu_us_per_req=cpu[i], rps=rps.get(t, (1000,) * 3)[i]) for t, cpu in chat.items()
        ]
        results.append(_row("litellm", "chat", cpu_us_per_req=9000, rps=rps["litellm"][i]))
        results += [
            _row(t, "stream", cpu_us_per_req=cpu[i], ttft_p50_ms=ttft[t][i]) for t, cpu in stream.items()
        ]
        results.append(_row("direct", "stream", cpu_us_per_req=100, ttft_p50_ms=ttft["direct"][i]))
        rounds.append({"round": i + 1, "results": results})
    return {
        "when": "20261205-170000",
        "command": "python -m benchmarks.load run",
        "config": {"targets": ["direct", "relay", "embedded", "pg-redis", "litellm"], "rounds": 3},
        "environment": {"dragonfly_commit": "abc1234", "dragonfly_dirty": False, "date": "2026-12-05"},
        # each round's merged figures are not what the summary reads when rounds are present
        "results": [r for rnd in rounds for r in rnd["results"] if rnd["round"] == 1],
        "rounds": rounds,
        "probe": {
            "direct": _probe((100, 150), (110, 160), (100, 150)),
            "relay": _probe((300, 500), (320, 520), (310, 700)),  # added: 200, 210, 210 / 350, 360, 550
            "embedded": _probe((380, 900), (420, 1200), (400, 1000)),  # added: 280, 310, 300 / 750, 1040, 850
            "pg-redis": _probe((700, 2000), (700, 2000), (800, 2000)),  # added: 600, 590, 700
        },
    }


def _by_key(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in s["rows"]}


def test_ratios_are_medians_of_paired_rounds_and_judged_against_the_targets() -> None:
    rows = _by_key(summary.compute(_run()))
    chat = rows["chat_cpu"]
    assert chat["floor"] == 100 and chat["dragonfly"] == 150
    assert chat["ratio"] == pytest.approx(140 / 90)  # median of 1.5, 1.818, 1.556
    assert chat["met"] is True and chat["n"] == 3
    pg = rows["chat_cpu_pg_redis"]
    assert pg["ratio"] == pytest.approx(2.4) and pg["met"] is True  # 2.4, 2.36, 3.33
    stream = rows["stream_cpu"]
    assert stream["ratio"] == pytest.approx(1.55) and stream["met"] is True  # 1.5, 1.65, 1.55
    ttft = rows["stream_ttft_added"]  # added over direct: relay 2, 1, 2; embedded 3, 3, 6 → 1.5, 3, 3
    assert ttft["floor"] == 2.0 and ttft["dragonfly"] == 3.0
    assert ttft["ratio"] == pytest.approx(3.0) and ttft["met"] is False
    rps = rows["rps_vs_litellm"]  # 60, 55, 31
    assert rps["floor_name"] == "litellm" and rps["ratio"] == pytest.approx(55.0) and rps["met"] is True


def test_unloaded_latency_is_an_excess_over_the_relay_paired_per_probe_pass() -> None:
    rows = _by_key(summary.compute(_run()))
    p50 = rows["unloaded_p50"]  # excess per pass: 80, 100, 90
    assert p50["floor"] == 210 and p50["dragonfly"] == 300
    assert p50["excess"] == pytest.approx(90) and p50["ratio"] is None and p50["met"] is True
    p99 = rows["unloaded_p99"]  # excess per pass: 400, 680, 300 → 400 ≤ 500
    assert p99["excess"] == pytest.approx(400) and p99["met"] is True
    pg = rows["unloaded_p50_pg_redis"]  # pg-redis added / embedded added: 600/280, 590/310, 700/300
    assert pg["floor_name"] == "embedded" and pg["ratio"] == pytest.approx(600 / 280) and pg["met"] is False


def test_a_run_without_a_target_says_not_measured() -> None:
    run = _run()
    for rnd in run["rounds"]:
        rnd["results"] = [r for r in rnd["results"] if r["target"] not in ("pg-redis", "litellm")]
    del run["probe"]["pg-redis"]
    s = summary.compute(run)
    rows = _by_key(s)
    for key in ("chat_cpu_pg_redis", "unloaded_p50_pg_redis", "rps_vs_litellm"):
        assert rows[key]["measured"] is False and rows[key]["met"] is None
    assert rows["chat_cpu"]["measured"] is True
    table = summary.render(s)
    assert "| figure | floor | Dragonfly | ratio | target | met? |" in table
    assert table.count("not measured") >= 3
    assert "≤ 1.6× relay | **yes** |" in table
    assert "| +90 µs | ≤ relay + 0.1 ms | **yes** |" in table
    # a run has only run-kind goals; the many-streams rows belong to streams runs
    assert {r["key"] for r in s["rows"]} == {g.key for g in goals.GOALS if g.source == goals.RUN}


def test_an_old_run_without_rounds_uses_its_merged_figures() -> None:
    run = _run()
    run["results"] = [r for r in run["rounds"][1]["results"]]  # round 2 stands for the merged figures
    del run["rounds"]
    rows = _by_key(summary.compute(run))
    assert rows["chat_cpu"]["ratio"] == pytest.approx(200 / 110) and rows["chat_cpu"]["met"] is False
    assert rows["chat_cpu"]["n"] == 1


def test_an_ab_run_stands_relay_and_head_for_the_floor_and_embedded() -> None:
    run = _run()
    ab = {
        "kind": "ab",
        "when": "20261205-180000",
        "command": "python -m benchmarks.load ab --ref x",
        "config": {"rounds": 3, "scenarios": ["chat", "stream"], "head_ref": None},
        "head": {"sha": "f" * 40, "uncommitted": []},
        "environment": {"dragonfly_commit": "abc1234", "dragonfly_dirty": False, "date": "2026-12-05"},
        "targets": [{"name": "relay"}, {"name": "baseline@0000000"}, {"name": "head"}],
        "rounds": [
            {
                "round": rnd["round"],
                "results": [
                    {**r, "target": {"embedded": "head"}.get(r["target"], r["target"])}
                    for r in rnd["results"]
                    if r["target"] in ("relay", "embedded")
                ],
            }
            for rnd in run["rounds"]
        ],
        "probe": {
            n: {"chat": run["probe"][m]["all"], "stream": []}
            for n, m in (("relay", "relay"), ("head", "embedded"))
        },
    }
    assert summary.kind_of(ab) == "ab"
    rows = _by_key(summary.compute(ab))
    assert rows["chat_cpu"]["ratio"] == pytest.approx(140 / 90)
    assert rows["unloaded_p50"]["excess"] == pytest.approx(90)  # absolute latencies: the excess is the same
    assert "no direct" in rows["unloaded_p50"]["note"]
    assert rows["stream_ttft_added"]["measured"] is False


def _streams(n: int = 100) -> dict[str, Any]:
    """direct: every stream 2,450 ms; embedded: 96 at 2,500 ms, 3 at 2,800 ms, 1 truncated."""
    direct = [[i / n, 1.0, 2450.0, "ok"] for i in range(n)]
    emb = [[i / n, 2.0, 2500.0, "ok"] for i in range(96)] + [[0.5, 2.0, 2800.0, "ok"]] * 3
    emb.append([0.9, None, 400.0, "truncated"])
    return {
        "kind": "streams",
        "when": "20261205-171000",
        "n": n,
        "chunks": 50,
        "chunk_delay_s": 0.05,
        "ramp_s": 1.0,
        "targets": [
            {"target": "direct", "n": n, "samples": direct, "complete": {"rss_per_stream_kib": 10.0}},
            {"target": "embedded", "n": n, "samples": emb, "complete": {"rss_per_stream_kib": 70.0}},
        ],
    }


def test_the_many_streams_rows_are_measured_against_direct() -> None:
    report = _streams()
    assert summary.kind_of(report) == "streams"
    rows = _by_key(summary.compute(report))
    assert set(rows) == {g.key for g in goals.GOALS if g.source == goals.STREAMS}
    within = rows["streams_within_10pct"]
    assert within["floor"] == 100.0 and within["dragonfly"] == pytest.approx(96.0) and within["met"] is True
    p99 = rows["streams_p99_stretch"]  # 2,800 / 2,450 − 1 = +14.3 %
    assert p99["dragonfly"] == pytest.approx((2800 / 2450 - 1) * 100) and p99["met"] is False
    mem = rows["memory_per_stream"]
    assert mem["dragonfly"] == 70.0 and mem["met"] is False and mem["floor"] is None  # no relay
    assert "100 streams, not 2,000" in within["note"]


def test_combine_takes_each_row_from_the_newest_run_that_measured_it(tmp_path: Path) -> None:
    old = _run()
    old["when"] = "20261201-000000"
    new = _run()
    for rnd in new["rounds"]:
        rnd["results"] = [r for r in rnd["results"] if r["target"] != "litellm"]
        for r in rnd["results"]:
            if r["target"] == "embedded" and r["scenario"] == "chat":
                r["cpu_us_per_req"] = 1000.0
    files = []
    for name, data in (("old.json", old), ("new.json", new), ("streams.json", _streams())):
        (tmp_path / name).write_text(json.dumps(data))
        files.append(tmp_path / name)
    s = summary.from_files(files)
    rows = _by_key(s)
    assert len(s["sources"]) == 3
    assert rows["chat_cpu"]["met"] is False  # from the new run
    assert s["sources"][rows["chat_cpu"]["source"]]["when"] == new["when"]
    assert s["sources"][rows["rps_vs_litellm"]["source"]]["when"] == old["when"]  # only the old one has it
    assert rows["memory_per_stream"]["measured"] is True
    table = summary.render(s)
    assert "(a) " in table and "(c) " in table


def test_the_committed_runs_have_a_summary() -> None:
    for f in sorted((ROOT / "benchmarks" / "runs").glob("*.json")):
        s = summary.compute(json.loads(f.read_text()))
        assert s["rows"], f
        assert "| figure |" in summary.render(s)


def test_the_plots_write_png_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = _run()
    run["ttft_hist"] = {
        "stream": {
            "direct": {"900": 5, "1000": 10},
            "relay": {"2000": 10, "3500": 2},
            "embedded": {"4000": 12},
        }
    }
    for p in plot.plot_all(run, tmp_path):
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000, p
    assert {p.name for p in tmp_path.iterdir()} == {"load.png", "cpu.png", "ttft.png"}
    png = plot.plot_streams(_streams(), tmp_path / "stretch.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
