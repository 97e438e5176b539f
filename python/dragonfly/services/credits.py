"""Operator credits: money into a buyer's cash account from the external credit account."""

from __future__ import annotations

from typing import Any

from dragonfly.domain.ledger import EXTERNAL_CREDIT, buyer_cash, credit_postings
from dragonfly.domain.money import usd
from dragonfly.errors import InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import accounts as accounts_repo
from dragonfly.storage.sql.repos import ledger

MAX_CREDIT_MICROS = 1_000_000 * 1_000_000  # $1M in one go is a typo, not a top-up


async def credit_account(db: Database, *, account_id: str, amount_micros: int, note: str) -> dict[str, Any]:
    """Post one `operator_credit` journal (fresh ref) and return it with the new balance."""
    if not 0 < amount_micros <= MAX_CREDIT_MICROS:
        raise InvalidRequest(
            "The credit amount must be positive and at most $1,000,000.", param="amount_cents"
        )
    ref = new_id()
    now = now_ms()
    async with db.transaction() as tx:
        if await accounts_repo.get(tx, account_id) is None:
            raise NotFound("Account not found.", param="account_id")
        await ledger.post_journal(
            tx,
            kind="operator_credit",
            ref=ref,
            postings=credit_postings(account_id, amount_micros, EXTERNAL_CREDIT),
            now=now,
            memo=note,
        )
        balance = await ledger.balance(tx, buyer_cash(account_id))
    return {
        "id": ref,
        "account_id": account_id,
        "amount_usd": usd(amount_micros),
        "amount_cents": amount_micros // 10_000,
        "note": note,
        "balance_usd": usd(balance),
        "created_at": iso(now),
    }
