"""Seller listings. Prices are integer micro-USD per 1M units (`price_unit`: tokens, or characters for
speech); `auto_follow` is JSON text; `reference_missing` is 0/1 (a multiplier listing without a reference
price, services/pricing.py)."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.storage.ports import Executor, Row

_COLUMNS = (
    "l.id, l.account_id, l.pool_key_id, l.model, l.upstream_model, l.kind, l.input_price, l.output_price,"
    " l.cached_input_price, l.price_multiplier, l.payout_floor, l.rpm_cap, l.concurrency_cap, l.auto_follow,"
    " l.context_length, l.encoding, l.price_unit, l.status, l.contract_status, l.confirmed_input_price,"
    " l.confirmed_output_price, l.reference_missing,"
    " l.created_at, l.updated_at, p.provider"
)
_FROM = "FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
UPDATABLE = (
    "input_price",
    "output_price",
    "cached_input_price",
    "price_multiplier",
    "payout_floor",
    "rpm_cap",
    "concurrency_cap",
    "auto_follow",
    "context_length",
    "encoding",
    "price_unit",
    "status",
    "contract_status",
    "confirmed_input_price",
    "confirmed_output_price",
    "reference_missing",
)


def _decode(row: Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    out["auto_follow"] = orjson.loads(out["auto_follow"]) if out["auto_follow"] else None
    return out


def _encode(column: str, value: Any) -> Any:
    if column == "auto_follow":
        return orjson.dumps(value).decode() if value is not None else None
    return value


async def insert(tx: Executor, row: dict[str, Any]) -> None:
    cols = [
        "id",
        "account_id",
        "pool_key_id",
        "model",
        "upstream_model",
        "kind",
        *UPDATABLE,
        "created_at",
        "updated_at",
    ]
    marks = ", ".join(f"${i + 1}" for i in range(len(cols)))
    await tx.execute(
        f"INSERT INTO listings ({', '.join(cols)}) VALUES ({marks})", *(_encode(c, row.get(c)) for c in cols)
    )


async def get(db: Executor, listing_id: str) -> Row | None:
    return _decode(
        await db.fetch_one(f"SELECT {_COLUMNS} {_FROM} WHERE l.id = $1 AND l.deleted_at IS NULL", listing_id)
    )


async def get_owned(db: Executor, *, account_id: str, listing_id: str) -> Row | None:
    return _decode(
        await db.fetch_one(
            f"SELECT {_COLUMNS} {_FROM} WHERE l.id = $1 AND l.account_id = $2 AND l.deleted_at IS NULL",
            listing_id,
            account_id,
        )
    )


async def list_owned(db: Executor, account_id: str) -> list[Row]:
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} {_FROM} WHERE l.account_id = $1 AND l.deleted_at IS NULL"
        " ORDER BY l.created_at, l.id",
        account_id,
    )
    return [r for r in (_decode(row) for row in rows) if r is not None]


async def update(tx: Executor, listing_id: str, changes: dict[str, Any], *, now: int) -> None:
    cols = [c for c in UPDATABLE if c in changes]
    sets = ", ".join([f"{c} = ${i + 3}" for i, c in enumerate(cols)] + ["updated_at = $2"])
    await tx.execute(
        f"UPDATE listings SET {sets} WHERE id = $1", listing_id, now, *(_encode(c, changes[c]) for c in cols)
    )


async def soft_delete(tx: Executor, *, listing_id: str, now: int) -> None:
    await tx.execute(
        "UPDATE listings SET deleted_at = $2, updated_at = $2, status = 'paused' WHERE id = $1",
        listing_id,
        now,
    )


async def pause_for_pool_key(tx: Executor, *, pool_key_id: str, now: int) -> int:
    return await tx.execute(
        "UPDATE listings SET status = 'paused', updated_at = $2"
        " WHERE pool_key_id = $1 AND deleted_at IS NULL AND status NOT IN ('paused', 'suspended')",
        pool_key_id,
        now,
    )
