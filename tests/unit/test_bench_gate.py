"""The CI gate's verdict (benchmarks/load/gate.py): Dragonfly's CPU per request is judged against the relay
floor of the same run, latency against the seller reached directly; a missing side is a failure, never a
pass. A failed run is confirmed by a second one before the gate fails."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load.gate import Thresholds, _judge, gate_confirmed  # noqa: E402


def _side(
    cpu: float, p50: float = 1.0, p99: float = 5.0, rps: float = 200.0, requests: int = 3200
) -> dict[str, Any]:
    return {
        "requests": requests,
        "errors": 0,
        "error_rate": 0.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "rps": rps,
        "cpu_us_per_req": cpu,
    }


TH = Thresholds(added_p50_ms=6.0, added_p99_ms=150.0, error_rate=0.005, cpu_x_relay=4.0, added_x_relay=4.0)


def test_a_gateway_within_the_limits_passes() -> None:
    assert _judge(_side(60), _side(200), _side(700, p50=2.5, p99=9.0), TH) == []


def test_cpu_per_request_over_the_relays_times_the_limit_fails() -> None:
    failures = _judge(_side(60), _side(200), _side(820), TH)
    assert failures == ["Dragonfly costs 4.10× the relay's CPU per request (limit 4.0×)"]


def test_the_ratio_is_to_the_relay_not_to_the_seller() -> None:
    # 10× the seller's CPU but 3.5× the relay's: the seller is not the floor the gate judges against.
    assert _judge(_side(70), _side(200), _side(700), TH) == []


def test_a_side_that_measured_nothing_fails_the_gate() -> None:
    assert _judge(_side(60), _side(200, requests=0), _side(700), TH) == [
        "no requests were measured (see the gate's logs)"
    ]
    failures = _judge(_side(60), _side(0), _side(700), TH)
    assert failures == ["no CPU per request was measured for Dragonfly or the relay"]


def test_latency_errors_and_rate_are_judged_against_the_seller_directly() -> None:
    slow = _side(700, p50=8.0, p99=9.0, rps=100.0)
    slow["error_rate"], slow["error_kinds"] = 0.01, {"APIError": 32}
    failures = _judge(_side(60), _side(200), slow, TH)
    assert failures[0] == "Dragonfly adds 7.00 ms at p50 (limit 6.00 ms)"
    assert failures[1].startswith("Dragonfly error rate 1.00% (limit 0.50%)")
    assert failures[2] == "Dragonfly kept up with only 100 of 200 requests/s"


def _runs(*verdicts: bool) -> tuple[list[bool], Any]:
    done: list[bool] = []
    left = list(verdicts)

    def run() -> bool:
        done.append(left.pop(0))
        return done[-1]

    return done, run


def _confirmed(run: Any) -> bool:
    return gate_confirmed(run)


def test_a_passing_run_is_not_repeated() -> None:
    done, run = _runs(True)
    assert _confirmed(run) is True
    assert done == [True]


def test_one_noisy_failure_is_run_again_and_the_second_verdict_stands() -> None:
    done, run = _runs(False, True)
    assert _confirmed(run) is True
    assert done == [False, True]
    done, run = _runs(False, False)
    assert _confirmed(run) is False  # a regression fails both runs: the gate fails
    assert done == [False, False]


def test_the_default_cpu_limit_is_the_calibrated_one() -> None:
    assert Thresholds().cpu_x_relay == 3.1


def test_added_latency_may_be_four_times_what_the_relay_added_on_a_slowed_machine() -> None:
    # The fresh-clone CI gate of 2026-12-07: a neighbour slowed the VM ~2x; the relay alone added 4.84 ms.
    direct, relay = _side(768, p50=2.68, p99=23.7), _side(1149, p50=7.52, p99=35.2)
    assert _judge(direct, relay, _side(2418, p50=12.9, p99=48.7), TH) == []
    # ... but not more than four times the relay's 4.84 ms (19.36 ms): that is Dragonfly's own regression.
    failures = _judge(direct, relay, _side(2418, p50=22.5, p99=48.7), TH)
    assert failures == ["Dragonfly adds 19.82 ms at p50 (limit 19.36 ms)"]


def test_on_a_quiet_machine_the_absolute_limits_hold() -> None:
    # The relay added 0.5 ms: four times that is below the absolute 6 ms, which stays the limit.
    failures = _judge(_side(60, p50=1.0), _side(200, p50=1.5), _side(700, p50=7.5), TH)
    assert failures == ["Dragonfly adds 6.50 ms at p50 (limit 6.00 ms)"]
