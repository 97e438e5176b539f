"""The trade's attempt plan (domain/trade.py): every admission refusal and upstream outcome under every
fallback policy, and properties over whole sequences of outcomes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain.trade import (
    RETRYABLE,
    AttemptPlan,
    context_refusal,
    fits,
    retry_class,
    tokens_needed,
    within_context,
)
from dragonfly.errors import (
    BudgetExceeded,
    ContextLengthExceeded,
    InsufficientBalance,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

POLICIES = [frozenset(c) for n in range(len(RETRYABLE) + 1) for c in itertools.combinations(RETRYABLE, n)]


def plan(attempts: int = 3, retry_on: frozenset[str] = frozenset(RETRYABLE)) -> AttemptPlan:
    return AttemptPlan(attempts, retry_on)


@pytest.mark.parametrize("retry_on", POLICIES, ids=lambda p: ",".join(sorted(p)) or "none")
@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_each_upstream_failure_falls_back_only_when_the_policy_says_so(
    retry_on: frozenset[str], attempts: int
) -> None:
    outcomes = {
        "timeout": (lambda p: p.unreachable("timeout"), UpstreamTimeout),
        "connect_error": (lambda p: p.unreachable("connect_error"), UpstreamError),
        "429": (lambda p: p.answered(429), UpstreamError),
        "5xx": (lambda p: p.answered(503), UpstreamError),
    }
    for name, (outcome, error) in outcomes.items():
        p = plan(attempts, retry_on)
        p.started()
        step = outcome(p)
        if name in retry_on and attempts > 1:
            assert step.action == "next" and step.error is None
        else:
            assert step.action == "stop" and isinstance(step.error, error)
        assert isinstance(p.final_error(), error)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_request_the_seller_calls_bad_stops_with_its_message(status: int) -> None:
    p = plan()
    p.started()
    step = p.answered(status, "messages: too many")
    assert step.action == "stop" and type(step.error) is InvalidRequest
    assert step.error.message == "messages: too many"
    assert plan().answered(status).error.message == "The upstream provider rejected the request."  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [401, 403, 404, 409, 418])
def test_other_seller_statuses_are_the_sellers_fault_and_fall_back_as_5xx(status: int) -> None:
    p = plan(5)
    p.started()
    assert p.answered(status).action == "next"
    p = plan(5, frozenset({"timeout"}))  # a profile that does not retry 5xx
    p.started()
    step = p.answered(status)
    assert step.action == "stop" and isinstance(step.error, UpstreamError)
    assert str(status) in step.error.message


def test_a_200_is_relayed() -> None:
    p = plan()
    p.started()
    assert p.answered(200).action == "relay"


@pytest.mark.parametrize(
    ("refusal", "error"),
    [("insufficient_balance", InsufficientBalance), ("budget_exceeded", BudgetExceeded)],
)
def test_money_refusals_stop_at_once_without_retry(refusal: str, error: type) -> None:
    step = plan().refused(refusal, 0, None)
    assert step.action == "stop" and isinstance(step.error, error)
    assert step.error is not None and step.error.headers["x-should-retry"] == "false"


def test_capped_listings_are_skipped_and_count_no_attempt() -> None:
    p = plan(1)
    for after, cap in [(30, 60), (5, 10), (12, None)]:
        assert p.refused("listing_rpm", after, cap).action == "skip"
    assert p.may_attempt and p.attempts == 0
    err = p.final_error()
    assert isinstance(err, RateLimited)
    assert err.headers["retry-after"] == "5"
    assert err.headers["x-ratelimit-limit-requests"] == "60"
    assert err.headers["x-ratelimit-reset-requests"] == "5s"


def test_an_upstream_error_outranks_rate_limits_in_the_final_error() -> None:
    p = plan(2)
    p.refused("listing_concurrency", 1, 4)
    p.started()
    p.unreachable("connect_error")
    assert isinstance(p.final_error(), UpstreamError)


def test_no_listing_at_all_is_an_upstream_error() -> None:
    err = plan().final_error()
    assert isinstance(err, UpstreamError) and err.message == "No listing could serve the request."


def test_attempts_cannot_exceed_the_policy() -> None:
    p = plan(2)
    p.started()
    assert p.unreachable("timeout").action == "next"
    p.started()
    assert p.unreachable("timeout").action == "stop"
    with pytest.raises(RuntimeError):
        p.started()


@pytest.mark.parametrize("bad", [(0, frozenset()), (6, frozenset()), (3, frozenset({"4xx"}))])
def test_an_invalid_policy_is_refused(bad: tuple[int, frozenset[str]]) -> None:
    with pytest.raises(ValueError):
        AttemptPlan(*bad)


def test_retry_classes() -> None:
    statuses = (429, 500, 503, 599, 401, 404, 400, 413, 422)
    assert [retry_class(s) for s in statuses] == ["429", "5xx", "5xx", "5xx", "5xx", "5xx", None, None, None]


Outcome = tuple[str, int]
OUTCOME = st.one_of(
    st.tuples(st.just("refused"), st.sampled_from(["listing_rpm", "listing_concurrency"])),
    st.tuples(st.just("unreachable"), st.sampled_from([0, 1])),
    st.tuples(st.just("answered"), st.sampled_from([200, 400, 401, 404, 429, 500, 502, 503])),
)


@given(
    attempts=st.integers(1, 5),
    retry_on=st.sampled_from(POLICIES),
    outcomes=st.lists(OUTCOME, max_size=12),
)
def test_any_sequence_of_outcomes_respects_the_policy(
    attempts: int, retry_on: frozenset[str], outcomes: list[tuple[str, object]]
) -> None:
    """Drive the plan the way the handler does: never more seller calls than max_attempts; a stop
    always carries an error; a fallback only after a failure the policy retries on."""
    p = plan(attempts, retry_on)
    calls = 0
    for kind, value in outcomes:
        if not p.may_attempt:
            break
        if kind == "refused":
            assert p.refused(str(value), 1, 10).action == "skip"
            continue
        p.started()
        calls += 1
        if kind == "unreachable":
            name = "timeout" if value else "connect_error"
            step = p.unreachable(name)  # type: ignore[arg-type]
        else:
            status = int(str(value))
            step = p.answered(status)
            name = retry_class(status) or ""
            if status == 200:
                assert step.action == "relay"
                break
        if step.action == "next":
            assert name in retry_on and calls < attempts
        else:
            assert step.action == "stop" and step.error is not None
            break
    assert calls <= attempts
    assert p.final_error() is not None


@dataclass
class Listing:
    context_length: int | None


def test_context_windows() -> None:
    assert tokens_needed(100, None) == 100 and tokens_needed(100, 50) == 150
    assert fits(Listing(None), 10**9) and fits(Listing(150), 150) and not fits(Listing(149), 150)
    listings = [Listing(64), Listing(None), Listing(4096)]
    assert within_context(listings, 100) == listings[1:]
    err = context_refusal("m", 5000, 100, 4096)
    assert isinstance(err, ContextLengthExceeded) and err.status == 400
    assert err.code == "context_length_exceeded" and err.param == "messages"
    assert "5000 tokens in the prompt plus max_tokens 100" in err.message and "4096" in err.message


def test_hedge_waits_for_the_one_leg_in_flight_and_only_while_attempts_remain() -> None:
    p = plan(3)
    assert p.hedge_delay_ms(None, 1, 0) is None  # hedging off
    p.started()
    assert p.hedge_delay_ms(200, 1, 0) == 200
    assert p.hedge_delay_ms(200, 1, 150) == 50
    assert p.hedge_delay_ms(200, 1, 900) == 0  # past due: hedge at once
    assert p.hedge_delay_ms(200, 2, 0) is None  # two legs race already
    p.started()
    p.started()
    assert p.hedge_delay_ms(200, 1, 0) is None  # a hedge is an attempt: none left
    single = plan(1)
    single.started()
    assert single.hedge_delay_ms(200, 1, 0) is None  # no fallback, no hedge


def _may_continue(p: AttemptPlan, **overrides: object) -> str | None:
    args: dict[str, object] = {
        "broke_as": "5xx",
        "choices": 1,
        "tool_calls": False,
        "finish_reason": None,
        "completion_left": None,
    }
    args.update(overrides)
    return p.continuation_refusal(**args)  # type: ignore[arg-type]


def test_continuation_only_when_a_prefix_can_carry_the_answer_and_fallback_allows() -> None:
    p = plan(3)
    p.started()
    assert _may_continue(p) is None
    assert _may_continue(p, completion_left=5) is None
    assert _may_continue(p, completion_left=0) == "max_tokens"
    assert _may_continue(p, tool_calls=True) == "tool_call"
    assert _may_continue(p, choices=2) == "several_choices"
    assert _may_continue(p, finish_reason="stop") == "finished"
    assert _may_continue(plan(3, frozenset({"429"}))) == "fallback"  # breaks retry as 5xx
    only_timeouts = plan(3, frozenset({"timeout"}))
    only_timeouts.started()
    assert _may_continue(only_timeouts, broke_as="timeout") is None
    assert _may_continue(only_timeouts) == "fallback"
    single = plan(1)
    single.started()
    assert _may_continue(single) == "fallback"  # fallback disabled: the stream ends with the error
