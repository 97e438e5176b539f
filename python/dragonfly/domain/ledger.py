"""The double-entry model: ledger account names and the journals each business event posts.

Sign convention: an entry's amount is added to its account's balance. Every journal sums to zero, so
money is only ever moved, never created: top-ups and trial credit come from `external:*` accounts,
which run negative.
"""

from __future__ import annotations

from dragonfly.domain.money import TradeCost
from dragonfly.record import record

PLATFORM_FEES = "platform:fees"
PLATFORM_ROUNDING = "platform:rounding"
EXTERNAL_TRIAL = "external:trial"
EXTERNAL_CREDIT = "external:credit"
EXTERNAL_PAYOUTS = "external:payouts"


def buyer_cash(account_id: str) -> str:
    return f"buyer:{account_id}:cash"


def seller_locked(account_id: str) -> str:
    return f"seller:{account_id}:locked"


def seller_available(account_id: str) -> str:
    return f"seller:{account_id}:available"


def seller_reserve(account_id: str) -> str:
    return f"seller:{account_id}:reserve"


def seller_payouts_pending(account_id: str) -> str:
    """Earnings the seller asked to be paid out, until the operator marks the payout paid."""
    return f"seller:{account_id}:payouts_pending"


@record
class Posting:
    account: str
    amount: int


class UnbalancedJournal(ValueError):
    pass


def check_balanced(postings: list[Posting]) -> list[Posting]:
    if sum(p.amount for p in postings) != 0:
        raise UnbalancedJournal("journal does not sum to zero")
    return [p for p in postings if p.amount != 0]


def trade_postings(buyer_id: str, seller_id: str, cost: TradeCost) -> list[Posting]:
    return check_balanced(
        [
            Posting(buyer_cash(buyer_id), -cost.charge),
            Posting(seller_locked(seller_id), cost.payout),
            Posting(seller_reserve(seller_id), cost.reserve),
            Posting(PLATFORM_FEES, cost.fee),
            Posting(PLATFORM_ROUNDING, cost.rounding),
        ]
    )


def credit_postings(account_id: str, amount: int, source: str = EXTERNAL_CREDIT) -> list[Posting]:
    if amount <= 0:
        raise ValueError("credit amount must be positive")
    return check_balanced([Posting(source, -amount), Posting(buyer_cash(account_id), amount)])
