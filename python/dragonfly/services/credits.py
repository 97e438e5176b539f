"""Operator credits: money into a buyer's cash account from the external credit account.

A credit made with an idempotency key (the `Idempotency-Key` header of `POST /api/admin/credits`) is
made at most once per operator and key: the key's row is inserted first in the credit's transaction, so
a retry — after a lost answer, or racing the first call on another control plane — finds it (on
PostgreSQL it waits for the first transaction to end) and gets the first credit's answer back instead of
a second journal. The same key with a different credit is refused (409): it is a mistake to be told of,
never a credit to guess at. A call that failed (404, 400) stored nothing, so its retry runs afresh."""

from __future__ import annotations

import re
from typing import Any

from dragonfly.domain.ledger import EXTERNAL_CREDIT, buyer_cash, credit_postings
from dragonfly.domain.money import usd
from dragonfly.errors import Conflict, InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.storage.ports import Database, Executor
from dragonfly.storage.sql.repos import accounts as accounts_repo
from dragonfly.storage.sql.repos import ledger

MAX_CREDIT_MICROS = 1_000_000 * 1_000_000  # $1M in one go is a typo, not a top-up
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255
# 1 to MAX printable ASCII characters (space included); the OpenAPI description states the same pattern.
IDEMPOTENCY_KEY = re.compile(rf"[ -~]{{1,{MAX_IDEMPOTENCY_KEY}}}")


def check_idempotency_key(value: str | None) -> str | None:
    """The header's value, or None when absent; refuses an empty, over-long or non-printable one (the
    value is never echoed: it may be anything the operator's script chose)."""
    if value is None:
        return None
    if IDEMPOTENCY_KEY.fullmatch(value) is None:
        raise InvalidRequest(
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
            param=IDEMPOTENCY_HEADER,
        )
    return value


async def credit_account(db: Database, *, account_id: str, amount_micros: int, note: str) -> dict[str, Any]:
    """Post one `operator_credit` journal (fresh ref) and return it with the new balance."""
    out, _ = await _credit(db, account_id, amount_micros, note, None)
    return out


async def credit_account_once(
    db: Database, *, account_id: str, amount_micros: int, note: str, operator_id: str, idempotency_key: str
) -> tuple[dict[str, Any], bool]:
    """`credit_account` at most once per `operator_id` and `idempotency_key`: the credit and False, or
    the first credit made with them and True (a replay)."""
    return await _credit(db, account_id, amount_micros, note, (operator_id, idempotency_key))


async def _credit(
    db: Database, account_id: str, amount_micros: int, note: str, once: tuple[str, str] | None
) -> tuple[dict[str, Any], bool]:
    if not 0 < amount_micros <= MAX_CREDIT_MICROS:
        raise InvalidRequest(
            "The credit amount must be positive and at most $1,000,000.", param="amount_cents"
        )
    ref = new_id()
    now = now_ms()
    async with db.transaction() as tx:
        if await accounts_repo.get(tx, account_id) is None:
            raise NotFound("Account not found.", param="account_id")
        if once is not None:
            first = await _claim(tx, once, ref, account_id, amount_micros, note, now)
            if first is not None:
                return _replay(first, account_id, amount_micros, note), True
        await ledger.post_journal(
            tx,
            kind="operator_credit",
            ref=ref,
            postings=credit_postings(account_id, amount_micros, EXTERNAL_CREDIT),
            now=now,
            memo=note,
        )
        balance = await ledger.balance(tx, buyer_cash(account_id))
        if once is not None:
            await tx.execute(
                "UPDATE credit_requests SET balance_micros = $1"
                " WHERE operator_id = $2 AND idempotency_key = $3",
                balance,
                *once,
            )
    return _answer(ref, account_id, amount_micros, note, balance, now), False


async def _claim(
    tx: Executor,
    once: tuple[str, str],
    ref: str,
    account_id: str,
    amount_micros: int,
    note: str,
    now: int,
) -> Any:
    """Take the key for this credit; None when taken, else the row of the credit that took it first."""
    taken = await tx.execute(
        "INSERT INTO credit_requests (operator_id, idempotency_key, credit_id, account_id, amount_micros,"
        " note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (operator_id, idempotency_key) DO NOTHING",
        *once,
        ref,
        account_id,
        amount_micros,
        note,
        now,
    )
    if taken:
        return None
    return await tx.fetch_one(
        "SELECT credit_id, account_id, amount_micros, note, balance_micros, created_at FROM credit_requests"
        " WHERE operator_id = $1 AND idempotency_key = $2",
        *once,
    )


def _replay(first: Any, account_id: str, amount_micros: int, note: str) -> dict[str, Any]:
    if (first["account_id"], int(first["amount_micros"]), first["note"]) != (account_id, amount_micros, note):
        raise Conflict(
            f"This {IDEMPOTENCY_HEADER} was used for a different credit ({first['credit_id']}): the account,"
            " amount and note of a retry must be the same.",
            param=IDEMPOTENCY_HEADER,
        )
    return _answer(
        first["credit_id"],
        account_id,
        amount_micros,
        note,
        int(first["balance_micros"]),
        int(first["created_at"]),
    )


def _answer(
    ref: str, account_id: str, amount_micros: int, note: str, balance: int, at: int
) -> dict[str, Any]:
    return {
        "id": ref,
        "account_id": account_id,
        "amount_usd": usd(amount_micros),
        "amount_cents": amount_micros // 10_000,
        "note": note,
        "balance_usd": usd(balance),
        "created_at": iso(at),
    }
