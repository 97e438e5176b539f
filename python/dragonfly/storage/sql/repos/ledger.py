"""Posting journals and reading balances. Callers pass an open transaction so a journal commits
together with the business row it belongs to (a trade, a verification, an operator credit)."""

from __future__ import annotations

from dragonfly.domain.ledger import Posting, check_balanced
from dragonfly.ids import new_id
from dragonfly.storage.ports import Executor


async def post_journal(
    tx: Executor, *, kind: str, ref: str, postings: list[Posting], now: int, memo: str | None = None
) -> bool:
    """Append one balanced journal. Idempotent by (kind, ref): a second post of the same event is a
    no-op and returns False."""
    lines = check_balanced(postings)
    inserted = await tx.execute(
        "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (kind, ref) DO NOTHING",
        new_id(),
        kind,
        ref,
        memo,
        now,
    )
    if not inserted:
        return False
    journal_id = await tx.fetch_val("SELECT id FROM journals WHERE kind = $1 AND ref = $2", kind, ref)
    await tx.execute_many(
        "INSERT INTO entries (journal_id, account, amount, created_at, public_id)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(journal_id, p.account, p.amount, now, new_id()) for p in lines],
    )
    for p in lines:
        await tx.execute(
            "INSERT INTO balances (account, amount) VALUES ($1, $2)"
            " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount",
            p.account,
            p.amount,
        )
    return True


async def balance(db: Executor, account: str) -> int:
    value = await db.fetch_val("SELECT amount FROM balances WHERE account = $1", account)
    return int(value or 0)


async def balances_with_prefix(db: Executor, prefix: str) -> dict[str, int]:
    rows = await db.fetch_all("SELECT account, amount FROM balances WHERE account LIKE $1", prefix + "%")
    return {r["account"]: int(r["amount"]) for r in rows}
