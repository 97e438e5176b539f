"""Routing decisions sampled by the data plane (gateway/activity.py) and read by the operator's activity
view. Ids are UUIDv7, so id order is time order; the table is kept to the newest rows by `prune`."""

from __future__ import annotations

from typing import Any

from dragonfly.storage.ports import Executor, Row

INSERT = (
    "INSERT INTO routing_decisions (id, at, instance, model, profile_id, strategy, seed, trade_id,"
    " chosen_listing_id, outcome, error_code, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
    " $11, $12)"
)


async def insert_many(tx: Executor, rows: list[tuple[Any, ...]]) -> None:
    """`rows`: tuples in the column order of `INSERT`."""
    await tx.execute_many(INSERT, rows)


async def prune(tx: Executor, *, keep: int) -> int:
    """Delete all but the newest `keep` decisions; returns how many went."""
    return await tx.execute(
        "DELETE FROM routing_decisions WHERE id < (SELECT id FROM routing_decisions ORDER BY id DESC"
        " LIMIT 1 OFFSET $1)",
        keep - 1,
    )


async def recent(db: Executor, *, model: str | None, profile_id: str | None, limit: int) -> list[Row]:
    where: list[str] = []
    args: list[Any] = []
    if model is not None:
        args.append(model)
        where.append(f"model = ${len(args)}")
    if profile_id is not None:
        args.append(profile_id)
        where.append(f"profile_id = ${len(args)}")
    args.append(limit)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return await db.fetch_all(
        "SELECT id, at, instance, model, profile_id, strategy, seed, trade_id, chosen_listing_id, outcome,"
        f" error_code, explanation FROM routing_decisions{clause} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
