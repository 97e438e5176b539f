"""The listing health state machine (domain/health.py): what counts as a failure, the streak and
success-rate rules, the ejection share, ejection times and re-probe outcomes; properties over whole
sequences of outcomes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain import health, listing_rules
from dragonfly.domain.health import Evidence, HealthPolicy, Streaks, Window

POLICY = HealthPolicy()


def ev(
    failures: int = 0, successes: int = 0, ok: int = 0, failed: int = 0, m_ok: int = 0, m_failed: int = 0
) -> Evidence:
    return Evidence(failures, successes, 30.0, ok, failed, m_ok, m_failed, "http_503")


@pytest.mark.parametrize(
    ("error_type", "outcome"),
    [
        ("connect_error", "failure"),
        ("timeout", "failure"),
        ("http_500", "failure"),
        ("http_503", "failure"),
        ("http_401", "failure"),
        ("http_404", "failure"),
        ("http_302", "failure"),
        ("invalid_body", "failure"),
        ("upstream_error_body", "failure"),
        ("UpstreamProtocolError", "failure"),
        ("http_429", "neutral"),
        ("http_400", "neutral"),
        ("http_413", "neutral"),
        ("http_422", "neutral"),
        ("http_x", "failure"),
    ],
)
def test_classify(error_type: str, outcome: str) -> None:
    assert health.classify(error_type) == outcome


def test_stream_outcome() -> None:
    assert health.stream_outcome(True, "stop") == "success"
    assert health.stream_outcome(True, None) == "success"
    assert health.stream_outcome(False, "error") == "failure"  # broke before it was complete
    assert health.stream_outcome(False, None) == "neutral"  # the buyer went away
    assert health.stream_outcome(False, "stop") == "neutral"  # complete, then broke


@pytest.mark.parametrize(
    "kwargs",
    [
        {"degrade_after": 0},
        {"degrade_after": 10, "suspend_after": 10},
        {"recover_after": 0},
        {"min_requests": 0},
        {"rate_margin": 1.5},
        {"max_ejected_share": -0.1},
        {"base_ejection_ms": 0},
        {"base_ejection_ms": 10, "max_ejection_ms": 5},
    ],
)
def test_policy_refuses_inconsistent_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**kwargs)  # type: ignore[arg-type]


def test_consecutive_failures_degrade_then_suspend() -> None:
    assert health.live_verdict("active", ev(failures=4), POLICY) is None
    t = health.live_verdict("active", ev(failures=5), POLICY)
    assert t is not None and (t.to, t.cause) == ("degraded", "consecutive_failures")
    # The same streak goes on counting once degraded: 10 in a row suspend.
    assert health.live_verdict("degraded", ev(failures=9), POLICY) is None
    t = health.live_verdict("degraded", ev(failures=10), POLICY)
    assert t is not None and (t.to, t.cause) == ("suspended", "consecutive_failures")
    # Never straight from active to suspended, and nothing from other states.
    assert health.live_verdict("active", ev(failures=50), POLICY).to == "degraded"  # type: ignore[union-attr]
    for status in ("suspended", "pending"):
        assert health.live_verdict(status, ev(failures=50), POLICY) is None


def test_success_rate_below_the_market_degrades() -> None:
    # 60 % against the model's 100 %, both over 20 outcomes: more than 20 points below.
    t = health.live_verdict("active", ev(failures=1, ok=12, failed=8, m_ok=20), POLICY)
    assert t is not None and (t.to, t.cause) == ("degraded", "success_rate")
    # 85 % against 100 %: within the margin.
    assert health.live_verdict("active", ev(failures=1, ok=17, failed=3, m_ok=20), POLICY) is None
    # Too few outcomes on either side: not judged.
    assert health.live_verdict("active", ev(failures=1, ok=5, failed=14, m_ok=20), POLICY) is None
    assert health.live_verdict("active", ev(failures=1, ok=12, failed=8, m_ok=19), POLICY) is None
    # The whole market failing alike is not this listing's fault.
    assert health.live_verdict("active", ev(failures=1, ok=12, failed=8, m_ok=12, m_failed=8), POLICY) is None


def test_degraded_recovers_after_successes_unless_still_below_the_market() -> None:
    t = health.live_verdict("degraded", ev(successes=5, ok=5), POLICY)
    assert t is not None and (t.to, t.cause) == ("active", "recovered")
    assert health.live_verdict("degraded", ev(successes=4, ok=4), POLICY) is None
    assert health.live_verdict("degraded", ev(successes=5, ok=5, failed=15, m_ok=30), POLICY) is None


def test_evidence_describes_the_numbers() -> None:
    text = ev(failures=5, ok=2, failed=5, m_ok=9, m_failed=1).describe()
    assert "in a row: 5 failed, 0 successful" in text
    assert "last 30 s: 2 ok, 5 failed (29 %)" in text
    assert "other listings: 9 ok, 1 failed (90 %)" in text
    assert "n/a" in ev().describe()


@pytest.mark.parametrize(
    ("routable", "ejected", "allowed"),
    [(1, 0, False), (2, 0, True), (2, 1, False), (3, 0, True), (3, 1, False), (4, 1, True), (4, 2, False)],
)
def test_ejection_share(routable: int, ejected: int, allowed: bool) -> None:
    assert health.may_eject(routable, ejected, POLICY) is allowed


@given(st.integers(0, 200), st.integers(0, 200), st.floats(0, 1))
def test_ejection_share_is_never_exceeded(routable: int, ejected: int, share: float) -> None:
    policy = HealthPolicy(max_ejected_share=share)
    if ejected <= routable and health.may_eject(routable, ejected, policy):
        assert ejected + 1 <= routable * share + 1e-6


def test_ejection_time_grows_and_is_capped() -> None:
    assert [health.ejection_ms(n, POLICY) for n in (1, 2, 3, 10, 11, 50)] == [
        30_000,
        60_000,
        90_000,
        300_000,
        300_000,
        300_000,
    ]


def test_ejections_are_forgiven_over_time() -> None:
    assert health.next_ejections(0, None, 0, POLICY) == 1
    assert health.next_ejections(3, 1_000, 2_000, POLICY) == 4
    # One earlier ejection forgiven per maximum ejection time since the last one began.
    assert health.next_ejections(3, 0, 300_000, POLICY) == 3
    assert health.next_ejections(3, 0, 10 * 300_000, POLICY) == 1


def test_reprobe_outcomes() -> None:
    def plan(status: str, passed: bool, may_suspend: bool = True) -> health.ReprobePlan:
        return health.after_reprobe(
            status,
            passed,
            ejections=1,
            last_ejected_at=0,
            now_ms=1_000,
            may_suspend=may_suspend,
            policy=POLICY,
        )

    p = plan("suspended", True)
    assert (p.status, p.ejections, p.reprobe_at) == ("degraded", 1, 31_000)  # probation
    p = plan("suspended", False)
    assert (p.status, p.ejections, p.last_ejected_at, p.reprobe_at) == ("suspended", 2, 1_000, 61_000)
    p = plan("degraded", True)
    assert (p.status, p.reprobe_at) == ("active", None)
    p = plan("degraded", False)
    assert (p.status, p.ejections, p.reprobe_at) == ("suspended", 2, 61_000)
    p = plan("degraded", False, may_suspend=False)
    assert (p.status, p.ejections, p.reprobe_at) == ("degraded", 1, 31_000)


def test_live_transition_schedules() -> None:
    def plan(to: str) -> health.ReprobePlan:
        return health.on_live_transition(to, ejections=0, last_ejected_at=None, now_ms=5, policy=POLICY)

    assert (plan("degraded").reprobe_at, plan("degraded").ejections) == (30_005, 0)
    assert (plan("suspended").reprobe_at, plan("suspended").ejections) == (30_005, 1)
    assert plan("active").reprobe_at is None


def test_streaks_survive_only_the_degrading_transition() -> None:
    assert health.keeps_streaks("active", "degraded")
    for before, after in [("degraded", "active"), ("degraded", "suspended"), ("suspended", "degraded")]:
        assert not health.keeps_streaks(before, after)


def test_window_forgets_old_outcomes() -> None:
    w = Window(30_000)
    w.add(0, False)
    w.add(4_000, True)
    assert w.counts(4_000) == (1, 1)
    assert w.counts(29_999) == (1, 1)
    assert w.counts(30_000) == (1, 0)  # the first bucket (0-3 s) has left the window
    assert w.counts(40_000) == (0, 0)


@given(st.lists(st.tuples(st.integers(0, 5_000), st.booleans()), max_size=200), st.integers(0, 200_000))
def test_window_counts_match_a_brute_force_count(steps: list[tuple[int, bool]], start: int) -> None:
    """With time moving forward, the window holds exactly the outcomes of the buckets it covers."""
    w = Window(30_000)
    now, seen = start, []
    for dt, ok in steps:
        now += dt
        w.add(now, ok)
        seen.append((now // 3_000, ok))
        oldest = now // 3_000 - 9
        expected = [o for b, o in seen if b >= oldest]
        assert w.counts(now) == (sum(expected), len(expected) - sum(expected))


@given(st.lists(st.sampled_from(["success", "failure", "neutral"]), max_size=60))
def test_streak_machine_properties(outcomes: list[health.Outcome]) -> None:
    """Over any sequence (one instance, the status following its own verdicts): a listing is suspended
    only after at least `suspend_after` failures in a row, never straight from active, and never while
    its last outcome was a success."""
    streaks, status, now = Streaks(Window(POLICY.window_ms)), "active", 0
    history = []
    for outcome in outcomes:
        now += 100
        streaks.observe(outcome, now, "x")
        history.append(outcome)
        t = health.live_verdict(status, health.evidence(streaks, (0, 0), now, POLICY), POLICY)
        if t is None:
            continue
        assert (status, t.to) in {("active", "degraded"), ("degraded", "suspended"), ("degraded", "active")}
        if t.to == "suspended":
            counted = [o for o in history if o != "neutral"]
            assert counted[-POLICY.suspend_after :] == ["failure"] * POLICY.suspend_after
        if t.to == "active":
            assert [o for o in history if o != "neutral"][-1] == "success"
        if not health.keeps_streaks(status, t.to):
            streaks = Streaks(Window(POLICY.window_ms))
        status = t.to
        if status == "suspended":
            break


def test_a_listing_resumed_under_a_health_suspension_is_active_but_unroutable_until_the_contract_is() -> None:
    assert listing_rules.seller_status_change("paused", "active", "suspended") == "active"
    assert listing_rules.unpaused_status("suspended") == "active"
    assert listing_rules.unpaused_status("pending") == "pending"
