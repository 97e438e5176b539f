"""The pure rules of trade reviews (domain/reviews.py: the excess, the refund's split and journal) and of
earnings holds, reserve releases and payouts (domain/payouts.py), against hand-worked figures and, for the
arithmetic, every input hypothesis finds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain.billing import Counted, Reported, allowance, bill
from dragonfly.domain.ledger import (
    EXTERNAL_PAYOUTS,
    PLATFORM_FEES,
    PLATFORM_ROUNDING,
    buyer_cash,
    seller_available,
    seller_locked,
    seller_payouts_pending,
    seller_reserve,
    trade_postings,
)
from dragonfly.domain.money import TradeCost, parse_usd, trade_cost
from dragonfly.domain.payouts import (
    DAY_MS,
    LockedAccount,
    payout_paid_postings,
    payout_refusal,
    payout_request_postings,
    release_due,
    reserve_cutoff_ms,
    reserve_paused,
    reserve_release_postings,
    summarize,
)
from dragonfly.domain.reviews import (
    Billed,
    excess,
    honest_charge,
    honest_quantities,
    refund_parts,
    refund_postings,
)

IN, OUT, CACHED = 10_000_000, 30_000_000, 5_000_000  # $10 / $30 / $5 per 1M tokens: 10 / 30 / 5 µUSD a token


def _billed(
    prompt: int,
    completion: int,
    counted_prompt: int | None,
    counted_completion: int | None,
    *,
    cached: int = 0,
    cached_price: int | None = None,
) -> Billed:
    charge = trade_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        input_price=IN,
        output_price=OUT,
        cached_input_price=cached_price,
        fee_bps=0,
        reserve_bps=0,
    ).charge
    return Billed(
        charge=charge,
        prompt=prompt,
        completion=completion,
        cached=cached,
        counted_prompt=counted_prompt,
        counted_completion=counted_completion,
        input_price=IN,
        output_price=OUT,
        cached_input_price=cached_price,
    )


# -- the excess -----------------------------------------------------------------------------------------


def test_a_capped_three_times_report_owes_back_the_slack() -> None:
    # An exact count of 45 prompt and 40 completion tokens; the seller reported 3x; billing capped it.
    b = bill(Reported(prompt=135, completion=120), Counted(45, 40, tokenizer_exact=True, prompt_covered=True))
    assert (b.prompt, b.completion, b.audit) == (allowance(45), allowance(40), "flagged")
    billed = _billed(b.prompt, b.completion, 45, 40)
    assert honest_quantities(billed) == (45, 40, 0)
    assert honest_charge(billed) == 45 * 10 + 40 * 30
    # allowance(45) - 45 = 5 prompt tokens, allowance(40) - 40 = 5 completion tokens
    assert excess(billed) == 5 * 10 + 5 * 30 == 200


def test_an_uncapped_report_owes_back_everything_above_the_count() -> None:
    # An estimated tokenizer: the 3x report was billed as it stood.
    billed = _billed(300, 600, 100, 200)
    assert excess(billed) == billed.charge - (100 * 10 + 200 * 30) == 200 * 10 + 400 * 30


def test_a_kind_without_a_count_keeps_its_bill_and_no_count_at_all_refunds_everything() -> None:
    only_completion = _billed(300, 600, None, 200)  # a trade settled before prompt counts were kept
    assert honest_quantities(only_completion) == (300, 200, 0)
    assert excess(only_completion) == 400 * 30
    nothing = _billed(300, 600, None, None)
    assert honest_charge(nothing) == 0 and excess(nothing) == nothing.charge


def test_reporting_less_than_the_count_owes_nothing() -> None:
    assert excess(_billed(90, 30, 100, 40)) == 0
    assert excess(_billed(0, 0, 0, 0)) == 0


def test_cached_tokens_stand_up_to_the_honest_prompt() -> None:
    # 40 cached tokens claimed on an 80-token prompt that Dragonfly counted at 30: at most 30 are cached.
    billed = _billed(80, 10, 30, 10, cached=40, cached_price=CACHED)
    assert honest_quantities(billed) == (30, 10, 30)
    assert honest_charge(billed) == 30 * 5 + 10 * 30
    # The bill: 40 cached at 5 + 40 uncached at 10 + 10 at 30.
    assert billed.charge == 40 * 5 + 40 * 10 + 10 * 30
    assert excess(billed) == billed.charge - (30 * 5 + 10 * 30)


def test_a_claimed_cache_never_raises_a_bill() -> None:
    # A cache claim lowers the charge (the cached price is never above the input price): the honest
    # amount keeps the claim, so the excess is only what the inflated prompt added.
    honest = _billed(45, 40, 45, 40)
    claimed = _billed(allowance(45), 40, 45, 40, cached=20, cached_price=CACHED)
    assert claimed.charge < honest.charge + 5 * 10
    assert excess(claimed) == 5 * 10


def test_the_honest_charge_rounds_up_like_every_charge() -> None:
    billed = Billed(
        charge=1,
        prompt=3,
        completion=0,
        cached=0,
        counted_prompt=1,
        counted_completion=0,
        input_price=100_000,  # 0.1 µUSD a token: 3 tokens bill 0.3 -> 1, 1 token 0.1 -> 1
        output_price=0,
        cached_input_price=None,
    )
    assert honest_charge(billed) == 1 and excess(billed) == 0


counts = st.none() | st.integers(0, 100_000)


@given(
    st.integers(0, 100_000), st.integers(0, 100_000), counts, counts, st.integers(0, 100_000), st.booleans()
)
def test_the_excess_is_between_nothing_and_the_charge(
    prompt: int, completion: int, cp: int | None, cc: int | None, cached: int, with_cache: bool
) -> None:
    billed = _billed(
        prompt, completion, cp, cc, cached=min(cached, prompt), cached_price=CACHED if with_cache else None
    )
    assert 0 <= excess(billed) <= billed.charge
    if cp is not None and cc is not None and cp >= prompt and cc >= completion:
        assert excess(billed) == 0  # nothing above the counts, nothing owed


# -- the refund's split and journal -----------------------------------------------------------------------


def _cost(prompt: int, completion: int, fee_bps: int = 1000, reserve_bps: int = 500) -> TradeCost:
    return trade_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=0,
        input_price=1_234_567,
        output_price=2_345_678,
        cached_input_price=None,
        fee_bps=fee_bps,
        reserve_bps=reserve_bps,
    )


def test_a_whole_refund_reverses_the_trade_exactly() -> None:
    cost = _cost(1000, 500)
    assert refund_parts(cost, cost.charge) == cost
    back = {(p.account, p.amount) for p in refund_postings("b", "s", cost)}
    there = {(p.account, -p.amount) for p in trade_postings("b", "s", cost)}
    assert back == there


def test_a_partial_refund_takes_each_share_in_proportion() -> None:
    cost = TradeCost(charge=1000, payout=855, reserve=45, fee=100, rounding=0)
    parts = refund_parts(cost, 200)
    assert parts == TradeCost(charge=200, payout=171, reserve=9, fee=20, rounding=0)
    odd = refund_parts(cost, 7)  # 5.985 / 0.315 / 0.7: floors 5, 0, 0 and the platform's residue 2
    assert odd == TradeCost(charge=7, payout=5, reserve=0, fee=0, rounding=2)
    lines = {p.account: p.amount for p in refund_postings("b", "s", odd)}
    assert lines == {buyer_cash("b"): 7, seller_locked("s"): -5, PLATFORM_ROUNDING: -2}
    assert refund_parts(cost, 0) == TradeCost(0, 0, 0, 0, 0)
    for bad in (-1, 1001):
        with pytest.raises(ValueError):
            refund_parts(cost, bad)
    with pytest.raises(ValueError):
        refund_postings("b", "s", refund_parts(cost, 0))


@given(
    st.integers(0, 200_000),
    st.integers(0, 200_000),
    st.integers(0, 5000),
    st.integers(0, 10_000),
    st.data(),
)
def test_refund_parts_sum_to_the_refund_and_never_exceed_the_trades_own(
    prompt: int, completion: int, fee_bps: int, reserve_bps: int, data: st.DataObject
) -> None:
    cost = _cost(prompt, completion, fee_bps, reserve_bps)
    refund = data.draw(st.integers(0, cost.charge))
    parts = refund_parts(cost, refund)
    assert parts.charge == refund == parts.payout + parts.reserve + parts.fee + parts.rounding
    assert 0 <= parts.payout <= cost.payout and 0 <= parts.reserve <= cost.reserve
    assert 0 <= parts.fee <= cost.fee
    assert 0 <= parts.rounding <= cost.rounding + 3  # the platform bears the flooring, never the seller
    if refund:
        postings = refund_postings("b", "s", parts)
        assert sum(p.amount for p in postings) == 0
        assert all(p.amount < 0 for p in postings if p.account != buyer_cash("b"))
        assert {p.account for p in postings} <= {
            buyer_cash("b"),
            seller_locked("s"),
            seller_reserve("s"),
            PLATFORM_FEES,
            PLATFORM_ROUNDING,
        }


# -- holds and releases -----------------------------------------------------------------------------------


def test_what_an_open_review_holds_is_not_released() -> None:
    # Credits 100 @10 (held by a review), 50 @20, 30 @300; cutoff 250.
    acct = summarize([(10, 100), (20, 50), (300, 30)], cutoff=250, held=[(10, 100)])
    assert acct == LockedAccount(balance=180, matured_credits=150, debits=0, held=100, held_matured=100)
    assert release_due(acct) == 50
    # After releasing 50 the review is dismissed: its 100 is due at once.
    after = [(10, 100), (20, 50), (300, 30), (260, -50)]
    assert release_due(summarize(after, cutoff=250, held=[(10, 100)])) == 0
    assert release_due(summarize(after, cutoff=250)) == 100
    # Upheld instead, with 40 of it refunded: the 60 left is due.
    upheld = [*after, (270, -40)]
    assert release_due(summarize(upheld, cutoff=250)) == 60
    # A held credit still in its window holds back nothing of the matured ones.
    assert release_due(summarize([(10, 50), (300, 30)], cutoff=250, held=[(300, 30)])) == 50


def test_a_release_never_reaches_into_the_hold() -> None:
    assert (
        release_due(LockedAccount(balance=100, matured_credits=500, debits=0, held=80, held_matured=0)) == 20
    )
    assert release_due(LockedAccount(balance=50, matured_credits=50, debits=0, held=80, held_matured=50)) == 0


@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 10_000), st.booleans()), max_size=30),
    st.integers(0, 1000),
)
def test_credits_only_release_every_matured_unheld_credit(
    credits: list[tuple[int, int, bool]], cutoff: int
) -> None:
    acct = summarize([(at, a) for at, a, _ in credits], cutoff, [(at, a) for at, a, held in credits if held])
    assert release_due(acct) == sum(a for at, a, held in credits if at < cutoff and not held)


def test_the_reserve_period_and_its_pause_after_an_upheld_review() -> None:
    now = 100 * DAY_MS
    assert reserve_cutoff_ms(now, 30) == 70 * DAY_MS
    assert reserve_cutoff_ms(now, 0.5) == now - DAY_MS // 2
    assert reserve_cutoff_ms(now, 0) == now
    assert not reserve_paused(None, now, 30)
    assert reserve_paused(now - 29 * DAY_MS, now, 30)  # upheld 29 days ago: paused
    assert not reserve_paused(now - 30 * DAY_MS, now, 30)  # exactly one period ago: released again
    assert not reserve_paused(now - 1, now, 0)  # a period of 0 never pauses
    lines = {(p.account, p.amount) for p in reserve_release_postings("s", 9)}
    assert lines == {(seller_reserve("s"), -9), (seller_available("s"), 9)}


# -- payouts ----------------------------------------------------------------------------------------------


def test_a_payout_is_refused_above_what_is_available() -> None:
    assert payout_refusal(100, 100) is None
    assert payout_refusal(101, 100) == "amount_usd is above your available earnings."
    assert payout_refusal(0, 100) is not None and payout_refusal(-5, 100) is not None
    assert payout_refusal(10**12 + 1, 10**13) is not None  # more than $1M at once


def test_payout_journals_move_available_to_pending_to_external() -> None:
    asked = {(p.account, p.amount) for p in payout_request_postings("s", 7)}
    assert asked == {(seller_available("s"), -7), (seller_payouts_pending("s"), 7)}
    paid = {(p.account, p.amount) for p in payout_paid_postings("s", 7)}
    assert paid == {(seller_payouts_pending("s"), -7), (EXTERNAL_PAYOUTS, 7)}


@pytest.mark.parametrize(
    ("text", "micros"), [("12.5", 12_500_000), ("0.000001", 1), (3, 3_000_000), ("1000000", 10**12)]
)
def test_usd_amounts_parse_to_micros(text: str | int, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize(
    "bad", ["0", "-1", "0.0000001", "1000000.000001", "1e999999", "abc", "NaN", "Infinity"]
)
def test_bad_usd_amounts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(bad)
