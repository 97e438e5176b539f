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
        "INSERT INTO entries (journal_id, account, amount, created_at) VALUES ($1, $2, $3, $4)",
        [(journal_id, p.account, p.amount, now) for p in lines],
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


async def post_journals_batch(
    tx: Executor, journals: list[tuple[str, str, list[Posting], int]], *, skip_existing: bool = True
) -> int:
    """Append many balanced journals `(kind, ref, postings, now)` with a constant number of statements
    (group commit of trade settlements). Journals whose (kind, ref) already exist are skipped first, so
    a replayed batch posts nothing twice. Returns how many were posted."""
    if not journals:
        return 0
    todo = [(k, r, check_balanced(p), now) for k, r, p, now in journals]
    if skip_existing:
        existing: set[tuple[str, str]] = set()
        for kind in {k for k, _, _, _ in todo}:
            refs = [r for k, r, _, _ in todo if k == kind]
            placeholders = ", ".join(f"${i + 2}" for i in range(len(refs)))
            rows = await tx.fetch_all(
                f"SELECT ref FROM journals WHERE kind = $1 AND ref IN ({placeholders})", kind, *refs
            )
            existing.update((kind, row["ref"]) for row in rows)
        todo = [j for j in todo if (j[0], j[1]) not in existing]
    if not todo:
        return 0
    ids = [new_id() for _ in todo]
    await tx.execute_many(
        "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, $2, $3, NULL, $4)",
        [(jid, k, r, now) for jid, (k, r, _, now) in zip(ids, todo, strict=True)],
    )
    await tx.execute_many(
        "INSERT INTO entries (journal_id, account, amount, created_at) VALUES ($1, $2, $3, $4)",
        [
            (jid, p.account, p.amount, now)
            for jid, (_, _, lines, now) in zip(ids, todo, strict=True)
            for p in lines
        ],
    )
    deltas: dict[str, int] = {}
    for _, _, lines, _ in todo:
        for p in lines:
            deltas[p.account] = deltas.get(p.account, 0) + p.amount
    await tx.execute_many(
        "INSERT INTO balances (account, amount) VALUES ($1, $2)"
        " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount",
        sorted(deltas.items()),  # a fixed order keeps concurrent PostgreSQL batches from deadlocking
    )
    return len(todo)
