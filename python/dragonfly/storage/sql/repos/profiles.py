"""Routing profiles. `config` is JSON text owned by `services.profiles` (see its docstring)."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.storage.ports import Executor, Row

_COLUMNS = "id, account_id, name, strategy, config, is_default, created_at, updated_at"


def _decode(row: Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    out["config"] = orjson.loads(out["config"] or "{}")
    out["is_default"] = bool(out["is_default"])
    return out


async def insert(
    tx: Executor,
    *,
    profile_id: str,
    account_id: str,
    name: str,
    strategy: str,
    config: dict[str, Any],
    is_default: bool,
    now: int,
) -> None:
    await tx.execute(
        "INSERT INTO routing_profiles (id, account_id, name, strategy, config, is_default, created_at,"
        " updated_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL)",
        profile_id,
        account_id,
        name,
        strategy,
        orjson.dumps(config).decode(),
        1 if is_default else 0,
        now,
    )


async def get_owned(db: Executor, *, account_id: str, profile_id: str) -> Row | None:
    return _decode(
        await db.fetch_one(
            f"SELECT {_COLUMNS} FROM routing_profiles"
            " WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL",
            profile_id,
            account_id,
        )
    )


async def get_default(db: Executor, account_id: str) -> Row | None:
    return _decode(
        await db.fetch_one(
            f"SELECT {_COLUMNS} FROM routing_profiles"
            " WHERE account_id = $1 AND is_default = 1 AND deleted_at IS NULL",
            account_id,
        )
    )


async def list_owned(db: Executor, account_id: str) -> list[Row]:
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM routing_profiles WHERE account_id = $1 AND deleted_at IS NULL"
        " ORDER BY is_default DESC, created_at, id",
        account_id,
    )
    return [r for r in (_decode(row) for row in rows) if r is not None]


async def update(
    tx: Executor, *, profile_id: str, name: str, strategy: str, config: dict[str, Any], now: int
) -> None:
    await tx.execute(
        "UPDATE routing_profiles SET name = $2, strategy = $3, config = $4, updated_at = $5 WHERE id = $1",
        profile_id,
        name,
        strategy,
        orjson.dumps(config).decode(),
        now,
    )


async def soft_delete(tx: Executor, *, profile_id: str, now: int) -> None:
    await tx.execute(
        "UPDATE routing_profiles SET deleted_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        profile_id,
        now,
    )
