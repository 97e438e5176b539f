"""The market-relative usage audit (domain/usage_audit.py): a one-sided CUSUM of each seller's
reported-to-counted ratio against the median of its competitors'. Its detection delays and false-alarm
rates under noise are measured by benchmarks/usage_audit_sim.py; these tests pin the mechanics."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain.usage_audit import BLOCK_TRADES, Alarm, H, K, UsageAudit, cusum_step

M, KIND = "vendor/model", "completion"


def _feed(audit: UsageAudit, seller: str, ratio: float, trades: int, counted: int = 1000) -> list[Alarm]:
    alarms = []
    for _ in range(trades):
        alarm = audit.observe(M, KIND, seller, round(counted * ratio), counted)
        if alarm is not None:
            alarms.append(alarm)
    return alarms


def _market(peers: int = 3, ratio: float = 1.1, blocks: int = 10) -> UsageAudit:
    audit = UsageAudit()
    for i in range(peers):
        _feed(audit, f"peer{i}", ratio, blocks * BLOCK_TRADES)
    return audit


def test_a_seller_reporting_what_the_market_reports_is_never_flagged() -> None:
    audit = _market(ratio=1.1)  # the model's tokenizer counts 10 % more than o200k_base: for everyone
    assert _feed(audit, "honest", 1.1, 100 * BLOCK_TRADES) == []
    assert audit.statistic(M, KIND, "honest") == 0.0
    assert math.isclose(audit.reference(M, KIND, "honest") or 0, 1.1)


def test_two_percent_is_found_after_the_blocks_the_cusum_needs() -> None:
    audit = _market(ratio=1.1)
    alarms = _feed(audit, "inflating", 1.1 * 1.02, 100 * BLOCK_TRADES)
    # Without noise each block adds log(1.02) - K to S: the first alarm is the first block past H.
    blocks = math.floor(H / (math.log(1.02) - K)) + 1
    assert alarms[0].trades == blocks * BLOCK_TRADES
    assert alarms[0].statistic > H and math.isclose(alarms[0].reference, 1.1)
    assert math.isclose(alarms[0].ratio, 1.1 * 1.02, rel_tol=1e-3)
    # After an alarm the statistic starts again: a seller that keeps inflating is flagged again.
    assert len(alarms) > 1


def test_three_times_is_found_within_a_few_blocks() -> None:
    audit = _market(ratio=1.1)
    alarms = _feed(audit, "cheat", 3.3, 10 * BLOCK_TRADES)
    assert alarms and alarms[0].trades <= 2 * BLOCK_TRADES


def test_under_reporting_is_not_flagged() -> None:
    audit = _market(ratio=1.1)
    assert _feed(audit, "modest", 0.5, 50 * BLOCK_TRADES) == []


def test_no_verdict_without_enough_peers() -> None:
    audit = _market(peers=1)
    assert audit.reference(M, KIND, "cheat") is None
    assert _feed(audit, "cheat", 3.0, 20 * BLOCK_TRADES) == []
    # Its blocks still count for the others: with a second peer there is a reference.
    _feed(audit, "peer9", 1.1, 10 * BLOCK_TRADES)
    assert _feed(audit, "cheat", 3.0, 2 * BLOCK_TRADES)


def test_a_large_seller_cannot_move_its_own_reference() -> None:
    audit = _market(peers=3, ratio=1.0)
    # The cheat settles 50x the volume of any peer: the reference is still the peers' ratio.
    alarms = _feed(audit, "big", 1.5, 500 * BLOCK_TRADES)
    assert audit.reference(M, KIND, "big") == 1.0
    assert alarms


def test_models_and_kinds_are_separate_markets() -> None:
    audit = _market(ratio=1.1)
    for i in range(3):
        for _ in range(10 * BLOCK_TRADES):
            audit.observe("other/model", KIND, f"peer{i}", 1000, 1000)
    assert audit.reference("other/model", KIND, "x") == 1.0
    assert audit.reference(M, "prompt", "x") is None


def test_trades_with_nothing_counted_or_reported_are_skipped() -> None:
    audit = UsageAudit()
    assert audit.observe(M, KIND, "s", 10, 0) is None
    assert audit.observe(M, KIND, "s", 0, 10) is None
    assert audit.statistic(M, KIND, "s") == 0.0


@given(st.floats(0, 10), st.floats(-1, 1), st.floats(-1, 1))
def test_cusum_step_is_nonnegative_and_monotone(s: float, z: float, dz: float) -> None:
    assert cusum_step(s, z) >= 0.0
    lo, hi = sorted((z, z + abs(dz)))
    assert cusum_step(s, lo) <= cusum_step(s, hi)
    assert cusum_step(s, z, K) == max(0.0, s + z - K)


@given(
    st.lists(st.floats(0.8, 1.3), min_size=BLOCK_TRADES, max_size=30 * BLOCK_TRADES),
    st.floats(1.0, 3.0),
)
def test_inflating_more_never_delays_the_alarm(ratios: list[float], inflation: float) -> None:
    """On the same trades, a seller that reports more is flagged no later (its reference is its
    peers', which its own reports do not move)."""

    def first_alarm(scale: float) -> int | None:
        audit = _market(peers=3, ratio=1.05)
        for i, r in enumerate(ratios):
            counted = 50 + (i * 37) % 400
            if audit.observe(M, KIND, "x", max(1, round(counted * r * scale)), counted) is not None:
                return i
        return None

    base, more = first_alarm(1.0), first_alarm(inflation)
    if base is not None:
        assert more is not None and more <= base
