"""A ledger account's journal lines, newest first, for billing statements. A line is shown by its UUID
(`public_id`, migration 014); its integer id orders the lines and is the page cursor."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row


async def lines(db: Executor, *, account: str, before_id: int | None, limit: int) -> list[Row]:
    if before_id is None:
        return await db.fetch_all(
            "SELECT e.id, e.public_id, e.amount, e.created_at, j.kind, j.ref, j.memo FROM entries e"
            " JOIN journals j ON j.id = e.journal_id WHERE e.account = $1 ORDER BY e.id DESC LIMIT $2",
            account,
            limit,
        )
    return await db.fetch_all(
        "SELECT e.id, e.public_id, e.amount, e.created_at, j.kind, j.ref, j.memo FROM entries e"
        " JOIN journals j ON j.id = e.journal_id WHERE e.account = $1 AND e.id < $2"
        " ORDER BY e.id DESC LIMIT $3",
        account,
        before_id,
        limit,
    )
