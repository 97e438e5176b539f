"""Seller earnings: which locked earnings and reserves are due for release, payouts, and the journals that
move them. Pure: no I/O.

A trade credits `seller:<id>:locked` (payout) and `seller:<id>:reserve` (reserve share). Locked earnings
unlock once the lock window has passed since the trade's journal was posted; the settlement worker then
moves them to `seller:<id>:available`. The reserve is released to available the same way after the
reserve period (`DRAGONFLY_RESERVE_RELEASE_DAYS`), except while the seller had a review upheld within
that period (`reserve_paused`).

What is due is computed cumulatively, never per period: every credit posted before the cutoff, minus
everything already taken out of the account. A trade committed late with an old timestamp (group commit,
clock skew between instances) is therefore picked up by the next run, and a run that sees nothing new
moves nothing, so running the release twice (or on two instances) cannot release twice.

Credits of trades under an open review (domain/reviews.py) are **held**: they count neither as matured
nor as releasable balance until the review is resolved. An upheld review's refund is a debit like a
release, so the trade's credit, counted again once resolved, releases only what the refund left. (A
refund of a trade still inside its window thus holds back as much of the seller's other matured
earnings until that trade matures: later, never more.)

Payouts: the seller asks for part of `available` (`payout_request`: available -> payouts pending); the
operator marks it paid once the money left (`payout_paid`: payouts pending -> external:payouts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dragonfly.domain.ledger import (
    EXTERNAL_PAYOUTS,
    Posting,
    check_balanced,
    seller_available,
    seller_locked,
    seller_payouts_pending,
    seller_reserve,
)

RELEASE_KIND = "earnings_release"
RESERVE_RELEASE_KIND = "reserve_release"
PAYOUT_REQUEST_KIND = "payout_request"
PAYOUT_PAID_KIND = "payout_paid"
DAY_MS = 86_400_000
# The most a seller may ask to be paid out at once: $1M in one request is a typo.
MAX_PAYOUT_MICROS = 1_000_000 * 1_000_000


@dataclass(frozen=True, slots=True)
class LockedAccount:
    """What a release needs to know about one seller's locked (or reserve) account at a cutoff."""

    balance: int  # current balance of seller:<id>:locked
    matured_credits: int  # sum of credits posted strictly before the cutoff
    debits: int  # sum of every debit ever taken out of the account (releases, refunds), as a positive number
    held: int = 0  # credits of trades under an open review, whenever posted
    held_matured: int = 0  # of which posted strictly before the cutoff


def cutoff_ms(now_ms: int, lock_s: int) -> int:
    """Earnings posted strictly before this instant are out of their lock window."""
    return now_ms - lock_s * 1000


def summarize(
    postings: Iterable[tuple[int, int]], cutoff: int, held: Iterable[tuple[int, int]] = ()
) -> LockedAccount:
    """Fold an account's `(created_at_ms, amount)` postings into a `LockedAccount`; `held` are the
    `(created_at_ms, amount)` credits among them of trades under an open review (the SQL repository
    computes the same sums with aggregates)."""
    balance = matured = debits = 0
    for at, amount in postings:
        balance += amount
        if amount > 0 and at < cutoff:
            matured += amount
        elif amount < 0:
            debits -= amount
    held_total = held_matured = 0
    for at, amount in held:
        held_total += amount
        if at < cutoff:
            held_matured += amount
    return LockedAccount(
        balance=balance, matured_credits=matured, debits=debits, held=held_total, held_matured=held_matured
    )


def release_due(acct: LockedAccount) -> int:
    """Micro-USD to move to available now: matured credits not under review and not yet taken out, never
    more than the balance less what is held, never negative."""
    return max(0, min(acct.balance - acct.held, acct.matured_credits - acct.held_matured - acct.debits))


def reserve_cutoff_ms(now_ms: int, days: float) -> int:
    """Reserve credits posted strictly before this instant are out of the reserve period."""
    return now_ms - round(days * DAY_MS)


def reserve_paused(last_upheld_ms: int | None, now_ms: int, days: float) -> bool:
    """No reserve is released while the seller's latest upheld review was resolved within the reserve
    period (strictly after `now − period`)."""
    return last_upheld_ms is not None and last_upheld_ms > reserve_cutoff_ms(now_ms, days)


def release_ref(seller_id: str, cutoff: int) -> str:
    """Idempotency reference of one release journal: a replay of the same run posts nothing."""
    return f"{seller_id}:{cutoff}"


def release_postings(seller_id: str, amount: int) -> list[Posting]:
    if amount <= 0:
        raise ValueError("release amount must be positive")
    return check_balanced(
        [Posting(seller_locked(seller_id), -amount), Posting(seller_available(seller_id), amount)]
    )


def reserve_release_postings(seller_id: str, amount: int) -> list[Posting]:
    if amount <= 0:
        raise ValueError("release amount must be positive")
    return check_balanced(
        [Posting(seller_reserve(seller_id), -amount), Posting(seller_available(seller_id), amount)]
    )


def payout_refusal(amount: int, available: int) -> str | None:
    """Why a payout of `amount` micro-USD cannot be asked for with `available` micro-USD available (None:
    it can)."""
    if amount <= 0:
        return "amount_usd must be positive."
    if amount > MAX_PAYOUT_MICROS:
        return "amount_usd must be at most 1000000."
    if amount > available:
        return "amount_usd is above your available earnings."
    return None


def payout_request_postings(seller_id: str, amount: int) -> list[Posting]:
    """A payout asked for: the amount leaves available earnings for the seller's payouts-pending account."""
    if amount <= 0:
        raise ValueError("payout amount must be positive")
    return check_balanced(
        [Posting(seller_available(seller_id), -amount), Posting(seller_payouts_pending(seller_id), amount)]
    )


def payout_paid_postings(seller_id: str, amount: int) -> list[Posting]:
    """A payout paid (bank transfer, etc.): the amount leaves payouts pending for external:payouts."""
    if amount <= 0:
        raise ValueError("payout amount must be positive")
    return check_balanced(
        [Posting(seller_payouts_pending(seller_id), -amount), Posting(EXTERNAL_PAYOUTS, amount)]
    )
