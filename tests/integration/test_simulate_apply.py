"""`dragonfly simulate apply-weights` against a real control plane on loopback (`python -m dragonfly.api`
as a subprocess, SQLite and PostgreSQL): the weights it writes are what GET /api/admin/routing/weights
returns afterwards; a refusal exits non-zero with the server's own message; the operator token comes from
the environment and is never printed; `custom` is refused before any request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import ProcessGroup

sys.path.insert(0, str(Path(__file__).parent / "api"))
from control_plane_support import ControlPlane, start_control_plane

WEIGHTS = "/api/admin/routing/weights"
TOKEN_ENV = "SIM_APPLY_TEST_TOKEN"


@pytest.fixture
def api(database_url: str, tmp_path: Path, processes: ProcessGroup) -> ControlPlane:
    return start_control_plane(processes, database_url, tmp_path / "data")


def _apply(*args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run(
        [sys.executable, "-m", "dragonfly.simulate", "apply-weights", "--token-env", TOKEN_ENV, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_apply_weights_writes_what_get_returns(api: ControlPlane) -> None:
    operator = api.make_operator("ops@example.com")
    before = api.call("GET", WEIGHTS, operator).json()
    assert before["balanced"]["price"] != 0.5

    done = _apply(
        "--strategy",
        "balanced",
        "--weights",
        "price=0.5,latency=0.2,reliability=0.3",
        "--url",
        api.origin,
        token=operator,
    )
    assert done.returncode == 0, done.stderr
    assert operator not in done.stdout + done.stderr  # the token is never echoed
    after = api.call("GET", WEIGHTS, operator).json()
    assert after["balanced"] == {
        "price": 0.5,
        "latency": 0.2,
        "throughput": 0.0,
        "reliability": 0.3,
        "quality": 0.0,
    }
    assert after["cost_first"] == before["cost_first"]  # only the named strategy changed
    assert '"price": 0.5' in done.stdout  # the server's answer is printed


def test_a_bad_weight_exits_non_zero_with_the_servers_message(api: ControlPlane) -> None:
    operator = api.make_operator("ops@example.com")
    before = api.call("GET", WEIGHTS, operator).json()
    done = _apply("--strategy", "balanced", "--weights", "ttft=1", "--url", api.origin, token=operator)
    assert done.returncode == 1
    assert "400" in done.stderr and "unknown weight 'ttft'" in done.stderr, done.stderr
    done = _apply("--strategy", "balanced", "--weights", "price=-1", "--url", api.origin, token=operator)
    assert done.returncode == 1 and "400" in done.stderr, done.stderr
    assert api.call("GET", WEIGHTS, operator).json() == before


def test_a_buyer_token_is_refused_by_the_server(api: ControlPlane) -> None:
    buyer = api.signup_verified("buyer@example.com")
    done = _apply("--strategy", "balanced", "--weights", "price=1", "--url", api.origin, token=buyer)
    assert done.returncode == 1 and "403" in done.stderr, done.stderr
    assert buyer not in done.stdout + done.stderr


def test_custom_and_a_missing_token_are_refused_before_any_request() -> None:
    # No server at all: these never get as far as a request.
    url = "http://127.0.0.1:9"
    done = _apply("--strategy", "custom", "--weights", "price=1", "--url", url, token="x" * 40)
    assert done.returncode == 2 and "custom has no global weights" in done.stderr
    done = _apply("--strategy", "balanced", "--weights", "price=1", "--url", url, token=None)
    assert done.returncode == 2 and TOKEN_ENV in done.stderr
