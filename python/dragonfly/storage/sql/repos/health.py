"""Listing health bookkeeping (migration 010): ejection count, re-probe schedule and its claim, and the
counts the ejection share is checked against."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

_COLUMNS = "listing_id, ejections, last_ejected_at, reprobe_at, lease_until, lease_by, updated_at"
_ADVISORY_CLASS = 7243003  # pg advisory lock namespace of health ejections per model (7243001/2: others)


async def get(db: Executor, listing_id: str) -> Row | None:
    return await db.fetch_one(f"SELECT {_COLUMNS} FROM listing_health WHERE listing_id = $1", listing_id)


async def save(
    tx: Executor,
    listing_id: str,
    *,
    ejections: int,
    last_ejected_at: int | None,
    reprobe_at: int | None,
    now: int,
) -> None:
    """Write the schedule and release any re-probe claim."""
    await tx.execute(
        "INSERT INTO listing_health (listing_id, ejections, last_ejected_at, reprobe_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (listing_id) DO UPDATE SET ejections = excluded.ejections,"
        " last_ejected_at = excluded.last_ejected_at, reprobe_at = excluded.reprobe_at, lease_until = NULL,"
        " lease_by = NULL, updated_at = excluded.updated_at",
        listing_id,
        ejections,
        last_ejected_at,
        reprobe_at,
        now,
    )


async def lock_model(tx: Executor, dialect: str, model: str) -> None:
    """Serialise ejections of one model's listings (PostgreSQL; SQLite's BEGIN IMMEDIATE already does),
    so two instances cannot both eject the last listing the share allows."""
    if dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ADVISORY_CLASS, model)


async def model_counts(db: Executor, model: str) -> tuple[int, int]:
    """(listings of `model` that would be routable but for health, how many of those are ejected): the
    listing itself active and its pool key alive; the contract active, degraded or health-suspended (an
    operator suspension also suspends the listing, so it is not counted)."""
    row = await db.fetch_one(
        "SELECT COUNT(*) AS routable,"
        " COALESCE(SUM(CASE WHEN l.contract_status = 'suspended' THEN 1 ELSE 0 END), 0) AS ejected"
        " FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
        " WHERE l.model = $1 AND l.deleted_at IS NULL AND p.deleted_at IS NULL AND l.status = 'active'"
        " AND l.contract_status IN ('active', 'degraded', 'suspended')",
        model,
    )
    assert row is not None
    return int(row["routable"]), int(row["ejected"])


async def due(db: Executor, now: int, limit: int) -> list[str]:
    """Listings whose re-probe is due and unclaimed: active listings with a degraded or (health-)
    suspended contract, soonest first. A schedule written before the contract's status last changed is
    void (a probe or an operator moved it since), so a contract a failed manual probe degraded is not
    re-probed on an old schedule."""
    rows = await db.fetch_all(
        "SELECT h.listing_id FROM listing_health h JOIN listings l ON l.id = h.listing_id"
        " JOIN contracts c ON c.listing_id = l.id"
        " WHERE h.reprobe_at IS NOT NULL AND h.reprobe_at <= $1"
        " AND (h.lease_until IS NULL OR h.lease_until < $1) AND h.updated_at >= c.since"
        " AND l.deleted_at IS NULL AND l.status = 'active' AND c.status IN ('degraded', 'suspended')"
        " ORDER BY h.reprobe_at LIMIT $2",
        now,
        limit,
    )
    return [str(r["listing_id"]) for r in rows]


async def claim(db: Executor, listing_id: str, *, now: int, lease_ms: int, by: str) -> bool:
    """Claim a due re-probe for `lease_ms`; False when another instance holds it or it is no longer due
    (one UPDATE: of two instances racing, exactly one matches the row)."""
    n = await db.execute(
        "UPDATE listing_health SET lease_until = $2, lease_by = $3"
        " WHERE listing_id = $1 AND reprobe_at IS NOT NULL AND reprobe_at <= $4"
        " AND (lease_until IS NULL OR lease_until < $4)",
        listing_id,
        now + lease_ms,
        by,
        now,
    )
    return n > 0


async def release(db: Executor, listing_id: str, by: str) -> None:
    await db.execute(
        "UPDATE listing_health SET lease_until = NULL, lease_by = NULL"
        " WHERE listing_id = $1 AND lease_by = $2",
        listing_id,
        by,
    )
