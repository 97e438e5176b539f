"""Market pricing (migration 011): reference prices, the listings one re-price pass reads, each listing's
price history, and the pricing worker's claim. The rules are `domain/pricing.py`'s."""

from __future__ import annotations

import orjson

from dragonfly.storage.ports import Executor, Row

_ADVISORY_CLASS = 7243004  # pg advisory lock namespace of re-pricing per model (7243001-3: others)
_REFERENCE_COLUMNS = (
    "model, kind, market_input_price, market_output_price, market_cached_input_price, market_listings,"
    " market_at, override_input_price, override_output_price, override_cached_input_price, override_by,"
    " override_at, updated_at"
)
_HISTORY_COLUMNS = (
    "id, listing_id, at, source, input_price, output_price, cached_input_price, previous_input_price,"
    " previous_output_price, detail"
)


async def lock_group(tx: Executor, dialect: str, model: str, kind: str) -> None:
    """Serialise re-pricing of one model's listings (PostgreSQL; SQLite's BEGIN IMMEDIATE already does):
    a seller's PATCH, an operator's reference and the worker's pass each read the whole group and write
    what follows from it."""
    if dialect == "postgres":
        await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ADVISORY_CLASS, f"{kind}:{model}")


async def group_listings(db: Executor, model: str, kind: str) -> list[Row]:
    """Every listing of (model, kind) that is not deleted, with whether its pool key is usable (oldest
    first; `auto_follow` decoded)."""
    rows = await db.fetch_all(
        "SELECT l.id, l.model, l.kind, l.price_unit, l.input_price, l.output_price, l.cached_input_price,"
        " l.price_multiplier, l.auto_follow, l.status, l.contract_status, l.reference_missing,"
        " l.confirmed_input_price, l.confirmed_output_price,"
        " CASE WHEN p.deleted_at IS NULL AND p.status = 'active' THEN 1 ELSE 0 END AS pool_usable"
        " FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
        " WHERE l.model = $1 AND l.kind = $2 AND l.deleted_at IS NULL ORDER BY l.created_at, l.id",
        model,
        kind,
    )
    return [{**r, "auto_follow": orjson.loads(r["auto_follow"]) if r["auto_follow"] else None} for r in rows]


async def groups(db: Executor) -> list[tuple[str, str]]:
    """Every (model, kind) a pass visits: those with listings, and those with a stored reference (whose
    market price may have to be cleared)."""
    rows = await db.fetch_all(
        "SELECT model, kind FROM listings WHERE deleted_at IS NULL"
        " UNION SELECT model, kind FROM reference_prices ORDER BY 1, 2"
    )
    return [(str(r["model"]), str(r["kind"])) for r in rows]


async def multiplier_groups(db: Executor) -> list[tuple[str, str]]:
    rows = await db.fetch_all(
        "SELECT DISTINCT model, kind FROM listings WHERE deleted_at IS NULL AND price_multiplier IS NOT NULL"
    )
    return [(str(r["model"]), str(r["kind"])) for r in rows]


async def count_multiplier_listings(db: Executor, model: str, kind: str) -> tuple[int, int]:
    """(multiplier listings of the model, how many of them have no reference)."""
    row = await db.fetch_one(
        "SELECT COUNT(*) AS n, COALESCE(SUM(reference_missing), 0) AS missing FROM listings"
        " WHERE model = $1 AND kind = $2 AND deleted_at IS NULL AND price_multiplier IS NOT NULL",
        model,
        kind,
    )
    assert row is not None
    return int(row["n"]), int(row["missing"])


# -- reference prices -----------------------------------------------------------------------------------


async def get_reference(db: Executor, model: str, kind: str) -> Row | None:
    return await db.fetch_one(
        f"SELECT {_REFERENCE_COLUMNS} FROM reference_prices WHERE model = $1 AND kind = $2", model, kind
    )


async def list_references(db: Executor) -> list[Row]:
    return await db.fetch_all(f"SELECT {_REFERENCE_COLUMNS} FROM reference_prices ORDER BY model, kind")


async def set_market(
    tx: Executor,
    model: str,
    kind: str,
    *,
    prices: tuple[int, int, int | None] | None,
    listings: int,
    now: int,
) -> None:
    """Store the market's median (None: no listing to take it from)."""
    inp, out, cached = prices if prices is not None else (None, None, None)
    await tx.execute(
        "INSERT INTO reference_prices (model, kind, market_input_price, market_output_price,"
        " market_cached_input_price, market_listings, market_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        " ON CONFLICT (model, kind) DO UPDATE SET market_input_price = excluded.market_input_price,"
        " market_output_price = excluded.market_output_price,"
        " market_cached_input_price = excluded.market_cached_input_price,"
        " market_listings = excluded.market_listings, market_at = excluded.market_at,"
        " updated_at = excluded.updated_at",
        model,
        kind,
        inp,
        out,
        cached,
        listings,
        now,
    )


async def set_override(
    tx: Executor,
    model: str,
    kind: str,
    *,
    prices: tuple[int, int, int | None] | None,
    by: str | None,
    now: int,
) -> None:
    """Set (prices) or clear (None) the operator's reference."""
    inp, out, cached = prices if prices is not None else (None, None, None)
    await tx.execute(
        "INSERT INTO reference_prices (model, kind, override_input_price, override_output_price,"
        " override_cached_input_price, override_by, override_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (model, kind) DO UPDATE SET override_input_price = excluded.override_input_price,"
        " override_output_price = excluded.override_output_price,"
        " override_cached_input_price = excluded.override_cached_input_price,"
        " override_by = excluded.override_by, override_at = excluded.override_at,"
        " updated_at = excluded.updated_at",
        model,
        kind,
        inp,
        out,
        cached,
        by,
        now if prices is not None else None,
        now,
    )


async def delete_empty_reference(tx: Executor, model: str, kind: str) -> None:
    """Forget a reference that holds neither a market price nor an override."""
    await tx.execute(
        "DELETE FROM reference_prices WHERE model = $1 AND kind = $2"
        " AND market_input_price IS NULL AND override_input_price IS NULL",
        model,
        kind,
    )


# -- price history --------------------------------------------------------------------------------------


async def insert_history(
    tx: Executor,
    *,
    entry_id: str,
    listing_id: str,
    at: int,
    source: str,
    prices: tuple[int, int, int | None],
    previous: tuple[int, int] | None,
    detail: str | None,
) -> None:
    """Appends as the listing's next entry `n` (the caller has updated the listing row in this
    transaction, which serialises writers of one listing)."""
    last = await tx.fetch_val("SELECT MAX(n) FROM listing_price_history WHERE listing_id = $1", listing_id)
    await tx.execute(
        f"INSERT INTO listing_price_history (n, {_HISTORY_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        int(last or 0) + 1,
        entry_id,
        listing_id,
        at,
        source,
        prices[0],
        prices[1],
        prices[2],
        None if previous is None else previous[0],
        None if previous is None else previous[1],
        detail,
    )


async def list_history(db: Executor, listing_id: str, limit: int) -> list[Row]:
    """The listing's newest `limit` price changes, newest first."""
    return await db.fetch_all(
        f"SELECT {_HISTORY_COLUMNS} FROM listing_price_history WHERE listing_id = $1"
        " ORDER BY n DESC LIMIT $2",
        listing_id,
        limit,
    )


# -- the worker's claim ---------------------------------------------------------------------------------


async def claim_run(db: Executor, *, now: int, period_ms: int, by: str) -> bool:
    """Claim the next pass (True) when it is due: moves `next_run_at` a period on, so of several control
    planes exactly one runs each pass."""
    n = await db.execute(
        "UPDATE pricing_runs SET next_run_at = $2, run_by = $3, last_run_at = $1"
        " WHERE id = 1 AND next_run_at <= $1",
        now,
        now + period_ms,
        by,
    )
    return n == 1
