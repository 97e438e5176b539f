"""Trade cost arithmetic and journal construction: exact to the micro-dollar, always balanced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dragonfly.domain.ledger import (
    Posting,
    UnbalancedJournal,
    check_balanced,
    credit_postings,
    trade_postings,
)
from dragonfly.domain.money import trade_cost, worst_case_hold

prices = st.integers(min_value=0, max_value=100_000_000)
tokens = st.integers(min_value=0, max_value=2_000_000)


@given(tokens, tokens, tokens, prices, prices, st.integers(0, 5000), st.integers(0, 10_000))
def test_trade_cost_splits_exactly(
    p: int, c: int, cached: int, pin: int, pout: int, fee: int, reserve: int
) -> None:
    cost = trade_cost(
        prompt_tokens=p,
        completion_tokens=c,
        cached_tokens=cached,
        input_price=pin,
        output_price=pout,
        cached_input_price=None,
        fee_bps=fee,
        reserve_bps=reserve,
    )
    assert cost.charge == cost.payout + cost.reserve + cost.fee + cost.rounding
    assert 0 <= cost.rounding <= 2
    assert min(cost.payout, cost.reserve, cost.fee) >= 0
    assert cost.charge <= worst_case_hold(
        prompt_tokens=p, max_completion_tokens=c, input_price=pin, output_price=pout
    )
    postings = trade_postings("buyer", "seller", cost)
    assert sum(x.amount for x in postings) == 0


def test_known_price_example() -> None:
    # 1,000 prompt tokens at $0.27/M and 500 completion tokens at $1.10/M = $0.00082
    cost = trade_cost(
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=0,
        input_price=270_000,
        output_price=1_100_000,
        cached_input_price=None,
        fee_bps=1000,
        reserve_bps=0,
    )
    assert cost.charge == 820
    assert cost.fee == 82 and cost.payout == 738 and cost.rounding == 0


def test_unbalanced_journal_is_refused() -> None:
    with pytest.raises(UnbalancedJournal):
        check_balanced([Posting("a", 1), Posting("b", -2)])
    with pytest.raises(ValueError):
        credit_postings("acct", 0)
