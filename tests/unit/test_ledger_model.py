"""The ledger model over the pure domain (`domain.ledger`, `domain.money`, `domain.payouts`,
`domain.reviews`): an in-memory double-entry book driven by random credits, reserves (holds), settles
(some flagged by the usage audit), voids, earnings and reserve releases, review resolutions (uphold with a
refund, dismiss) and payouts (asked for, marked paid) must keep every invariant of ARCHITECTURE.md,
Invariants 1–3 after every step, never release what an open review holds, and account for every
micro-USD of every seller."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dragonfly.domain.ledger import (
    Posting,
    buyer_cash,
    check_balanced,
    credit_postings,
    seller_available,
    seller_locked,
    seller_payouts_pending,
    seller_reserve,
    trade_postings,
)
from dragonfly.domain.money import TradeCost, trade_cost, worst_case_hold
from dragonfly.domain.payouts import (
    LockedAccount,
    cutoff_ms,
    payout_paid_postings,
    payout_refusal,
    payout_request_postings,
    release_due,
    release_postings,
    release_ref,
    reserve_cutoff_ms,
    reserve_paused,
    reserve_release_postings,
    summarize,
)
from dragonfly.domain.reviews import refund_parts, refund_postings

BUYERS = ("b1", "b2", "b3")
SELLERS = ("s1", "s2")
LOCK_S = 60
RESERVE_DAYS = 0.001  # 86.4 s: a few `advance` steps


@dataclass
class Hold:
    buyer: str
    seller: str
    amount: int
    prompt: int
    max_completion: int
    input_price: int
    output_price: int
    cached_price: int | None


@dataclass
class Review:
    buyer: str
    seller: str
    cost: TradeCost
    at: int


@dataclass
class Book:
    """Journals as posted, entries with their time, stored balances updated per posting."""

    journals: list[list[Posting]] = field(default_factory=list)
    entries: list[tuple[str, int, int]] = field(default_factory=list)  # (account, amount, at)
    balances: dict[str, int] = field(default_factory=dict)

    def post(self, postings: list[Posting], at: int) -> None:
        lines = check_balanced(postings)
        self.journals.append(lines)
        for p in lines:
            self.entries.append((p.account, p.amount, at))
            self.balances[p.account] = self.balances.get(p.account, 0) + p.amount

    def bal(self, account: str) -> int:
        return self.balances.get(account, 0)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = Book()
        self.now = 1_000_000
        self.holds: dict[int, Hold] = {}
        self.next_hold = 0
        self.settled: list[tuple[int, int]] = []  # (cost, hold) of every settle
        self.max_cutoff: dict[str, int] = {}
        self.open_reviews: dict[int, Review] = {}
        self.next_review = 0
        self.reviewed: set[str] = set()  # sellers that ever had a flagged trade
        self.last_upheld: dict[str, int] = {}
        self.credited: dict[str, int] = {}  # every seller share ever credited by a trade
        self.refunded: dict[str, int] = {}  # every seller part ever refunded by an upheld review
        self.pending_payouts: list[tuple[str, int]] = []
        self.paid: dict[str, int] = {}
        self.released: dict[str, int] = {}  # locked earnings released, per seller

    def held(self, buyer: str) -> int:
        return sum(h.amount for h in self.holds.values() if h.buyer == buyer)

    def available(self, buyer: str) -> int:
        return self.book.bal(buyer_cash(buyer)) - self.held(buyer)

    @rule(buyer=st.sampled_from(BUYERS), amount=st.integers(1, 5_000_000))
    def credit(self, buyer: str, amount: int) -> None:
        self.book.post(credit_postings(buyer, amount), self.now)

    @rule(
        buyer=st.sampled_from(BUYERS),
        seller=st.sampled_from(SELLERS),
        prompt=st.integers(0, 200_000),
        max_completion=st.integers(0, 100_000),
        input_price=st.integers(0, 20_000_000),
        output_price=st.integers(0, 60_000_000),
        cached_ratio=st.none() | st.integers(0, 100),
    )
    def reserve(
        self,
        buyer: str,
        seller: str,
        prompt: int,
        max_completion: int,
        input_price: int,
        output_price: int,
        cached_ratio: int | None,
    ) -> None:
        hold = worst_case_hold(
            prompt_tokens=prompt,
            max_completion_tokens=max_completion,
            input_price=input_price,
            output_price=output_price,
        )
        if hold > self.available(buyer):
            return  # admission refuses: insufficient_balance
        cached = None if cached_ratio is None else input_price * cached_ratio // 100
        self.holds[self.next_hold] = Hold(
            buyer, seller, hold, prompt, max_completion, input_price, output_price, cached
        )
        self.next_hold += 1

    @precondition(lambda self: bool(self.holds))
    @rule(
        data=st.data(),
        fee_bps=st.integers(0, 5000),
        reserve_bps=st.integers(0, 10_000),
    )
    def settle(self, data: st.DataObject, fee_bps: int, reserve_bps: int) -> None:
        """Settle a hold; some trades are flagged by the usage audit (their seller share then held)."""
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        h = self.holds.pop(hold_id)
        prompt = data.draw(st.integers(0, h.prompt))
        cost = trade_cost(
            prompt_tokens=prompt,
            completion_tokens=data.draw(st.integers(0, h.max_completion)),
            cached_tokens=data.draw(st.integers(0, prompt)),
            input_price=h.input_price,
            output_price=h.output_price,
            cached_input_price=h.cached_price,
            fee_bps=fee_bps,
            reserve_bps=reserve_bps,
        )
        self.settled.append((cost.charge, h.amount))
        postings = trade_postings(h.buyer, h.seller, cost)
        if postings:
            self.book.post(postings, self.now)
            self.credited[h.seller] = self.credited.get(h.seller, 0) + cost.payout + cost.reserve
            if data.draw(st.booleans()):
                self.open_reviews[self.next_review] = Review(h.buyer, h.seller, cost, self.now)
                self.next_review += 1
                self.reviewed.add(h.seller)

    @precondition(lambda self: bool(self.holds))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        del self.holds[data.draw(st.sampled_from(sorted(self.holds)))]

    @rule(ms=st.integers(1, 2 * LOCK_S * 1000))
    def advance(self, ms: int) -> None:
        self.now += ms

    def review_held(self, seller: str, reserve: bool = False) -> list[tuple[int, int]]:
        """(posted at, amount) of the seller's credits to locked (or reserve) under open reviews."""
        return [
            (r.at, r.cost.reserve if reserve else r.cost.payout)
            for r in self.open_reviews.values()
            if r.seller == seller
        ]

    def locked_account(self, seller: str, cutoff: int) -> LockedAccount:
        account = seller_locked(seller)
        postings = ((at, amt) for acc, amt, at in self.book.entries if acc == account)
        return summarize(postings, cutoff, self.review_held(seller))

    def reserve_account(self, seller: str, cutoff: int) -> LockedAccount:
        account = seller_reserve(seller)
        postings = ((at, amt) for acc, amt, at in self.book.entries if acc == account)
        return summarize(postings, cutoff, self.review_held(seller, reserve=True))

    @rule(seller=st.sampled_from(SELLERS))
    def release(self, seller: str) -> None:
        cutoff = cutoff_ms(self.now, LOCK_S)
        amount = release_due(self.locked_account(seller, cutoff))
        if amount > 0:
            self.book.post(release_postings(seller, amount), self.now)
            self.released[seller] = self.released.get(seller, 0) + amount
        self.max_cutoff[seller] = max(self.max_cutoff.get(seller, 0), cutoff)
        account = seller_locked(seller)
        matured = sum(a for acc, a, at in self.book.entries if acc == account and a > 0 and at < cutoff)
        released = self.released.get(seller, 0)
        if seller not in self.reviewed:
            # Without reviews, released so far is exactly every locked credit posted before the cutoff.
            assert released == matured
        # Never more than the matured credits not under review (refunds, also debits, only lower it).
        assert released <= matured - sum(a for at, a in self.review_held(seller) if at < cutoff)
        # A second run at the same cutoff finds nothing due.
        assert release_due(self.locked_account(seller, cutoff)) == 0

    @rule(seller=st.sampled_from(SELLERS))
    def release_reserve(self, seller: str) -> None:
        if reserve_paused(self.last_upheld.get(seller), self.now, RESERVE_DAYS):
            return
        cutoff = reserve_cutoff_ms(self.now, RESERVE_DAYS)
        amount = release_due(self.reserve_account(seller, cutoff))
        if amount > 0:
            self.book.post(reserve_release_postings(seller, amount), self.now)
        assert release_due(self.reserve_account(seller, cutoff)) == 0

    @precondition(lambda self: bool(self.open_reviews))
    @rule(data=st.data())
    def resolve(self, data: st.DataObject) -> None:
        """Uphold (refund some or all of the charge) or dismiss an open review."""
        review = self.open_reviews.pop(data.draw(st.sampled_from(sorted(self.open_reviews))))
        if not data.draw(st.booleans()):
            return  # dismissed: the share is simply no longer held
        refund = data.draw(st.integers(0, review.cost.charge))
        parts = refund_parts(review.cost, refund)
        if refund > 0:
            # What the review held covers the seller's part of any refund.
            assert self.book.bal(seller_locked(review.seller)) >= parts.payout
            assert self.book.bal(seller_reserve(review.seller)) >= parts.reserve
            self.book.post(refund_postings(review.buyer, review.seller, parts), self.now)
        self.refunded[review.seller] = self.refunded.get(review.seller, 0) + parts.payout + parts.reserve
        self.last_upheld[review.seller] = self.now

    @rule(seller=st.sampled_from(SELLERS), data=st.data())
    def request_payout(self, seller: str, data: st.DataObject) -> None:
        available = self.book.bal(seller_available(seller))
        amount = data.draw(st.integers(1, max(1, 2 * available)))
        if payout_refusal(amount, available) is not None:
            assert amount > available
            return
        self.book.post(payout_request_postings(seller, amount), self.now)
        self.pending_payouts.append((seller, amount))

    @precondition(lambda self: bool(self.pending_payouts))
    @rule(data=st.data())
    def mark_paid(self, data: st.DataObject) -> None:
        seller, amount = self.pending_payouts.pop(data.draw(st.integers(0, len(self.pending_payouts) - 1)))
        self.book.post(payout_paid_postings(seller, amount), self.now)
        self.paid[seller] = self.paid.get(seller, 0) + amount

    @invariant()
    def journals_balanced(self) -> None:
        assert all(sum(p.amount for p in j) == 0 for j in self.book.journals)

    @invariant()
    def balances_equal_entries(self) -> None:
        sums: dict[str, int] = {}
        for account, amount, _ in self.book.entries:
            sums[account] = sums.get(account, 0) + amount
        assert {k: v for k, v in sums.items() if v} == {k: v for k, v in self.book.balances.items() if v}
        assert sum(self.book.balances.values()) == 0

    @invariant()
    def no_negative_buyer_cash(self) -> None:
        for buyer in BUYERS:
            assert self.book.bal(buyer_cash(buyer)) >= 0
            assert self.available(buyer) >= 0

    @invariant()
    def seller_accounts_not_negative(self) -> None:
        for seller in SELLERS:
            accounts = (seller_locked(seller), seller_available(seller), seller_reserve(seller))
            for account in (*accounts, seller_payouts_pending(seller)):
                assert self.book.bal(account) >= 0

    @invariant()
    def open_reviews_are_covered(self) -> None:
        for seller in SELLERS:
            assert self.book.bal(seller_locked(seller)) >= sum(a for _, a in self.review_held(seller))
            assert self.book.bal(seller_reserve(seller)) >= sum(
                a for _, a in self.review_held(seller, reserve=True)
            )

    @invariant()
    def every_seller_micro_is_accounted_for(self) -> None:
        for seller in SELLERS:
            where = (seller_locked, seller_reserve, seller_available, seller_payouts_pending)
            held = sum(self.book.bal(f(seller)) for f in where) + self.paid.get(seller, 0)
            assert held == self.credited.get(seller, 0) - self.refunded.get(seller, 0)

    @invariant()
    def settle_never_above_hold(self) -> None:
        assert all(0 <= cost <= hold for cost, hold in self.settled)


TestLedgerModel = LedgerMachine.TestCase
TestLedgerModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


# -- domain.payouts ------------------------------------------------------------------------------------


def test_release_due_is_matured_credits_not_yet_released() -> None:
    postings = [(100, 50), (200, 30), (300, 20)]
    acct = summarize(postings, cutoff=250)
    assert acct == LockedAccount(balance=100, matured_credits=80, debits=0)
    assert release_due(acct) == 80
    # After releasing 80, the same cutoff owes nothing; a later cutoff owes only the new credit.
    released = [*postings, (260, -80)]
    assert release_due(summarize(released, cutoff=250)) == 0
    assert release_due(summarize(released, cutoff=301)) == 20
    # The cutoff is strict: a credit posted exactly at the cutoff is still locked.
    assert release_due(summarize(released, cutoff=300)) == 0


def test_late_committed_credit_is_released_by_the_next_run() -> None:
    # Released through cutoff 250, then a trade with an older timestamp (150) commits.
    history = [(100, 50), (260, -50), (150, 40)]
    assert release_due(summarize(history, cutoff=250)) == 40


def test_release_never_exceeds_balance_nor_goes_negative() -> None:
    assert release_due(LockedAccount(balance=10, matured_credits=100, debits=0)) == 10
    assert release_due(LockedAccount(balance=0, matured_credits=5, debits=10)) == 0


def test_release_journal_shape() -> None:
    lines = release_postings("s", 7)
    assert {(p.account, p.amount) for p in lines} == {(seller_locked("s"), -7), (seller_available("s"), 7)}
    assert release_ref("s", 123) == "s:123"
    assert cutoff_ms(10_000, 3) == 7_000
    with pytest.raises(ValueError):
        release_postings("s", 0)
    with pytest.raises(ValueError):
        payout_request_postings("s", -1)
    with pytest.raises(ValueError):
        payout_paid_postings("s", 0)


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 10_000)), max_size=30), st.integers(0, 1000))
def test_summarize_of_credits_only(postings: list[tuple[int, int]], cutoff: int) -> None:
    acct = summarize(postings, cutoff)
    assert acct.balance == sum(a for _, a in postings)
    assert release_due(acct) == sum(a for at, a in postings if at < cutoff)
