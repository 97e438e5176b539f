"""Operator suspensions of listings: who suspended, why, when, the status to go back to, and what lifted
them. At most one open (not lifted) suspension per listing (a partial unique index)."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

_COLUMNS = (
    "id, listing_id, reason, suspended_by, suspended_at, previous_status, lifted_at, lifted_by,"
    " lift_probe_run_id"
)


async def insert(
    tx: Executor,
    *,
    suspension_id: str,
    listing_id: str,
    reason: str | None,
    actor_id: str,
    previous_status: str,
    now: int,
) -> None:
    await tx.execute(
        "INSERT INTO listing_suspensions"
        " (id, listing_id, reason, suspended_by, suspended_at, previous_status)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        suspension_id,
        listing_id,
        reason,
        actor_id,
        now,
        previous_status,
    )


async def get(db: Executor, suspension_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM listing_suspensions WHERE id = $1", suspension_id)


async def open_for_listing(db: Executor, listing_id: str) -> Row | None:
    return await db.fetch_one(
        f"SELECT {_COLUMNS} FROM listing_suspensions WHERE listing_id = $1 AND lifted_at IS NULL",
        listing_id,
    )


async def lift(tx: Executor, *, suspension_id: str, actor_id: str, probe_run_id: str, now: int) -> bool:
    """Close an open suspension; False when it was lifted meanwhile (two operators at once)."""
    n = await tx.execute(
        "UPDATE listing_suspensions SET lifted_at = $2, lifted_by = $3, lift_probe_run_id = $4"
        " WHERE id = $1 AND lifted_at IS NULL",
        suspension_id,
        now,
        actor_id,
        probe_run_id,
    )
    return n > 0
