"""Seller earnings release: which locked earnings are due, and the journals that move them.

A trade credits `seller:<id>:locked`. Earnings unlock once the lock window has passed since the trade's
journal was posted; the settlement worker then moves them to `seller:<id>:available`.

What is due is computed cumulatively, never per period: every locked credit posted before the cutoff,
minus everything already taken out of the locked account. A trade committed late with an old timestamp
(group commit, clock skew between instances) is therefore picked up by the next run, and a run that sees
nothing new moves nothing, so running the release twice (or on two instances) cannot release twice.
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
)

RELEASE_KIND = "earnings_release"
PAYOUT_KIND = "seller_payout"


@dataclass(frozen=True, slots=True)
class LockedAccount:
    """What the release needs to know about one seller's locked account at a cutoff."""

    balance: int  # current balance of seller:<id>:locked
    matured_credits: int  # sum of credits posted strictly before the cutoff
    debits: int  # sum of every debit ever taken out of the account (releases), as a positive number


def cutoff_ms(now_ms: int, lock_s: int) -> int:
    """Earnings posted strictly before this instant are out of their lock window."""
    return now_ms - lock_s * 1000


def summarize(postings: Iterable[tuple[int, int]], cutoff: int) -> LockedAccount:
    """Fold a locked account's `(created_at_ms, amount)` postings into a `LockedAccount` (the SQL
    repository computes the same three sums with aggregates)."""
    balance = matured = debits = 0
    for at, amount in postings:
        balance += amount
        if amount > 0 and at < cutoff:
            matured += amount
        elif amount < 0:
            debits -= amount
    return LockedAccount(balance=balance, matured_credits=matured, debits=debits)


def release_due(acct: LockedAccount) -> int:
    """Micro-USD to move from locked to available now: matured credits not yet taken out, never more
    than the locked balance and never negative."""
    return max(0, min(acct.balance, acct.matured_credits - acct.debits))


def release_ref(seller_id: str, cutoff: int) -> str:
    """Idempotency reference of one release journal: a replay of the same run posts nothing."""
    return f"{seller_id}:{cutoff}"


def release_postings(seller_id: str, amount: int) -> list[Posting]:
    if amount <= 0:
        raise ValueError("release amount must be positive")
    return check_balanced(
        [Posting(seller_locked(seller_id), -amount), Posting(seller_available(seller_id), amount)]
    )


def payout_postings(seller_id: str, amount: int) -> list[Posting]:
    """Money paid out to the seller (bank transfer, etc.) leaves available earnings for external:payouts."""
    if amount <= 0:
        raise ValueError("payout amount must be positive")
    return check_balanced([Posting(seller_available(seller_id), -amount), Posting(EXTERNAL_PAYOUTS, amount)])
