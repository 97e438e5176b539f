"""A run is a function of its scenario and seed: the same seed gives the same report, byte for byte, and
nothing in a run reads the wall clock."""

from __future__ import annotations

import json
import time

import pytest

from dragonfly.simulate import SCENARIOS, Scenario, load_scenario, run


def _scenario(seed: int | None = None) -> Scenario:
    sc = load_scenario(SCENARIOS / "seller_outage.toml").scaled(0.2)
    return sc if seed is None else sc.model_copy(update={"seed": seed})


def _json(sc: Scenario) -> str:
    return json.dumps(run(sc).to_dict(), sort_keys=True)


def test_the_same_seed_gives_the_same_report() -> None:
    first = _json(_scenario())
    assert first == _json(_scenario())
    assert json.loads(first)["requests"] > 1_000


def test_another_seed_gives_another_report() -> None:
    assert _json(_scenario(1)) != _json(_scenario(2))


def test_a_run_reads_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _json(_scenario())

    def no_clock(*_: object) -> float:
        raise AssertionError("the simulation read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"):
        monkeypatch.setattr(time, name, no_clock)
    assert _json(_scenario()) == expected
