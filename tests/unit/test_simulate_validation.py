"""Scenario files are validated with clear errors: each problem named by its path in the file, exit
code 2 and no traceback from the command line."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dragonfly.cli import main
from dragonfly.simulate import SCENARIOS, ScenarioError, load_scenario, parse_scenario

BASE: dict[str, Any] = {
    "name": "t",
    "duration_s": 60,
    "models": [{"id": "m"}],
    "listings": [
        {"id": f"l{i}", "seller": f"s{i}", "model": "m", "input_price": "0.1", "output_price": "0.2"}
        for i in range(3)
    ],
    "profiles": [{"id": "p"}],
    "traffic": {"rate": 1},
}


def _error(change: Any) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    return str(err.value)


def test_the_minimal_scenario_is_valid() -> None:
    sc = parse_scenario(BASE)
    assert sc.listings[0].behaviour.kind == "honest" and sc.listings[0].input_price == 100_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["listings"][2].update(behaviour={"kind": "flakey"}),
            "listings[2].behaviour.kind: unknown behaviour 'flakey' (known: honest, slow, flaky, outage, "
            "dies_mid_stream, inflates, substitutes)",
        ),
        (
            lambda d: d["listings"][1].update(input_price="-0.5"),
            "listings[1].input_price: price must be a non-negative decimal",
        ),
        (lambda d: d["listings"][0].update(colour="red"), "listings[0].colour: unknown key"),
        (
            lambda d: d["listings"][0].update(behaviour={"kind": "flaky"}),
            "listings[0].behaviour.failure_rate: missing",
        ),
        (
            lambda d: d["listings"][0].update(
                behaviour={"kind": "flaky", "failure_rate": [[0, 0.1], [10, 1.5]]}
            ),
            "listings[0].behaviour.failure_rate: values are shares of calls, at most 1",
        ),
        (
            lambda d: d["listings"][0].update(behaviour={"kind": "slow", "ttft_ms": {"dist": "gamma"}}),
            "listings[0].behaviour.ttft_ms.dist: unknown distribution 'gamma' (known: constant, lognormal, "
            "normal, uniform)",
        ),
        (
            lambda d: d["listings"][0].update(behaviour={"kind": "outage", "windows": [[10, 5]]}),
            "listings[0].behaviour: windows must be [start_s, end_s] spans",
        ),
        (lambda d: d["listings"][0].update(model="other"), "listings[0].model: unknown model 'other'"),
        (lambda d: d["profiles"][0].update(strategy="custom"), "profiles[0]: strategy custom needs weights"),
        (
            lambda d: d["profiles"][0].update(strategy="custom", weights={"ttft": 1}),
            "profiles[0].weights: unknown weight 'ttft'",
        ),
        (
            lambda d: d["profiles"][0].update(fallback={"max_attempts": 9}),
            "profiles[0].fallback.max_attempts: Input should be less than or equal to 5",
        ),
        (lambda d: d.update(weights={"cheap": {"price": 1}}), "weights: unknown strategy 'cheap'"),
        (lambda d: d.pop("traffic"), "traffic: missing"),
        (lambda d: d.update(duration_s=-1), "duration_s: Input should be greater than 0"),
        (lambda d: d["listings"].append(dict(d["listings"][0])), "listings[3].id: 'l0' is used twice"),
    ],
)
def test_each_problem_is_named_by_its_path(change: Any, message: str) -> None:
    assert message in _error(change)


def test_bad_toml_names_the_file_and_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nduration_s = = 3\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML: .*line 2"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_the_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        (SCENARIOS / "seller_outage.toml").read_text().replace('kind = "outage"', 'kind = "flakey"')
    )
    result = CliRunner().invoke(main, ["simulate", str(path)])
    assert result.exit_code == 2
    assert "listings[0].behaviour.kind: unknown behaviour 'flakey'" in result.output
    assert "Traceback" not in result.output


def test_the_module_runs_a_scenario_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dragonfly.simulate",
            str(SCENARIOS / "price_war.toml"),
            "--time-scale",
            "0.1",
            "--json",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "war-a" in done.stdout and "trades/s" in done.stderr
    assert '"scenario": "price_war"' in out.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text("duration_s = [")
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly.simulate", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "not valid TOML" in done.stderr and "Traceback" not in done.stderr
