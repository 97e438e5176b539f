"""The weight search: candidates normalised and deduplicated by proportion, the Pareto front holds only
non-dominated points and dominates every other, a sweep is deterministic for a seed (and does not
depend on the number of processes), and its targets are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dragonfly.cli import main
from dragonfly.native.market import FEATURES
from dragonfly.simulate import SCENARIOS, Scenario, load_scenario
from dragonfly.simulate.sweep import (
    SweepError,
    dominates,
    grid_candidates,
    normalise,
    pareto_front,
    random_candidates,
    run_sweep,
    with_weights,
)

SLOW = SCENARIOS / "slow_seller.toml"


def _scenario(seed: int | None = None) -> Scenario:
    sc = load_scenario(SLOW).scaled(0.1)
    return sc if seed is None else sc.model_copy(update={"seed": seed})


def _key(w: dict[str, float]) -> tuple[float, ...]:
    return tuple(w[f] for f in FEATURES)


def test_grid_candidates_are_normalised_and_unique_by_proportion() -> None:
    grid = grid_candidates((0, 0.5, 1), ("price", "latency"))
    # (0.5, 0.5) and (1, 1) are one proportion; the all-zero vector is left out.
    assert sorted(_key(w) for w in grid) == sorted(
        [
            (0.0, 1.0, 0.0, 0.0, 0.0),
            (1.0, 0.0, 0.0, 0.0, 0.0),
            (0.5, 0.5, 0.0, 0.0, 0.0),
            (0.3333, 0.6667, 0.0, 0.0, 0.0),
            (0.6667, 0.3333, 0.0, 0.0, 0.0),
        ]
    )
    full = grid_candidates()
    assert len({_key(w) for w in full}) == len(full) > 500
    assert all(abs(sum(w.values()) - 1) < 1e-3 for w in full)


def test_random_candidates_are_seeded() -> None:
    assert random_candidates(12, 3) == random_candidates(12, 3)
    assert random_candidates(12, 3) != random_candidates(12, 4)
    assert all(abs(sum(w.values()) - 1) < 1e-3 for w in random_candidates(12, 3))


def test_unknown_features_and_zero_vectors_are_refused() -> None:
    with pytest.raises(SweepError, match="unknown weight 'ttft'"):
        grid_candidates(vary=("ttft",))
    with pytest.raises(SweepError):
        normalise({"price": 0})


def test_pareto_front_on_known_points() -> None:
    points = [(1, 5, 0), (2, 2, 0), (5, 1, 0), (3, 3, 0), (1, 5, 0), (2, 2, -1), (6, 6, -1)]
    front = pareto_front(points)
    # (3,3,0) is dominated by (2,2,0); (2,2,0) by (2,2,-1); the two (1,5,0) tie and both stay.
    assert front == [0, 2, 4, 5]
    assert dominates((2, 2, -1), (2, 2, 0)) and not dominates((1, 5, 0), (1, 5, 0))


def test_target_weights_replace_a_strategy_or_a_profile() -> None:
    sc = _scenario()
    w = normalise({"latency": 1})
    as_strategy = with_weights(sc, "cost_first", w)
    assert as_strategy.weights["cost_first"].latency == 1.0
    as_profile = with_weights(sc, "bulk", w)
    bulk = next(p for p in as_profile.profiles if p.id == "bulk")
    assert bulk.strategy == "custom" and bulk.weights is not None and bulk.weights.latency == 1.0
    with pytest.raises(SweepError, match="no profile of scenario slow_seller uses strategy balanced"):
        with_weights(sc, "balanced", w)
    with pytest.raises(SweepError, match="custom has no weights"):
        with_weights(sc, "custom", w)
    with pytest.raises(SweepError, match="unknown sweep target 'nobody'"):
        with_weights(sc, "nobody", w)


def test_the_front_is_exactly_the_non_dominated_points() -> None:
    result = run_sweep(
        _scenario(), "cost_first", grid_candidates((0, 1), ("price", "latency", "reliability"))
    )
    assert result.points[0].label == "current"
    objectives = {p.index: p.objectives(result.ttft) for p in result.points}
    front = [p for p in result.points if p.on_front]
    rest = [p for p in result.points if not p.on_front]
    assert front and rest, "this grid has both kinds of point"
    for p in front:
        assert not any(dominates(objectives[q.index], objectives[p.index]) for q in result.points)
    for p in rest:
        assert any(dominates(objectives[q.index], objectives[p.index]) for q in front)
    # The weights matter: pure price buys cheaper tokens than pure latency, which waits less.
    by_key = {_key(p.weights): p for p in result.points}
    price, latency = by_key[(1.0, 0, 0, 0, 0)], by_key[(0, 1.0, 0, 0, 0)]
    assert price.cost_per_mtok_usd is not None and latency.cost_per_mtok_usd is not None
    assert price.cost_per_mtok_usd < latency.cost_per_mtok_usd
    assert price.ttft_ms_p50 is not None and latency.ttft_ms_p50 is not None
    assert latency.ttft_ms_p50 < price.ttft_ms_p50


def test_a_sweep_is_deterministic_for_a_seed() -> None:
    def front(seed: int, jobs: int = 1) -> list[dict[str, object]]:
        result = run_sweep(_scenario(seed), "interactive", random_candidates(5, seed), jobs=jobs)
        return [p for p in result.to_dict()["points"] if p["on_front"]]

    first = front(1)
    assert first == front(1)
    assert first == front(1, jobs=2)
    assert first != front(2)


def test_the_cli_sweep_prints_the_front_and_writes_json_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(SLOW),
            "--sweep",
            "cost_first",
            "--grid",
            "--levels",
            "0,1",
            "--vary",
            "price,latency",
            "--time-scale",
            "0.1",
            "--json",
            str(out),
            "--png",
            str(tmp_path / "png"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "on the Pareto front" in result.output and "current" in result.output
    data = json.loads(out.read_text())
    assert data["target"] == "cost_first" and data["profiles"] == ["bulk"]
    assert data["front"] == [p["index"] for p in data["points"] if p["on_front"]]
    png = tmp_path / "png" / "simulate-slow_seller-sweep-cost_first.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_cli_refuses_a_sweep_without_candidates_or_target() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", str(SLOW), "--sweep", "cost_first"])
    assert result.exit_code == 2 and "--grid or --random" in result.output
    result = runner.invoke(main, ["simulate", str(SLOW), "--sweep", "balanced", "--random", "3"])
    assert (
        result.exit_code == 2 and "no profile of scenario slow_seller uses strategy balanced" in result.output
    )


def test_apply_weights_parses_name_value_pairs_and_refuses_custom() -> None:
    from dragonfly.simulate.apply import ApplyError, check_strategy, parse_weights

    assert parse_weights("price=0.5, latency=0.2,reliability=0.3") == {
        "price": 0.5,
        "latency": 0.2,
        "reliability": 0.3,
    }
    with pytest.raises(ApplyError, match="not name=value"):
        parse_weights("price")
    with pytest.raises(ApplyError, match="not a number"):
        parse_weights("price=cheap")
    with pytest.raises(ApplyError, match="custom has no global weights"):
        check_strategy("custom")
    with pytest.raises(ApplyError, match="unknown strategy 'fastest'"):
        check_strategy("fastest")
