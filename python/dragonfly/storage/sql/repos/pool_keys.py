"""Seller pool keys: the provider key is stored only as an AEAD ciphertext bound to the record id."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

_COLUMNS = "id, account_id, provider, base_url, name, key_ciphertext, key_hint, status, created_at"


async def insert(
    tx: Executor,
    *,
    pool_key_id: str,
    account_id: str,
    provider: str,
    base_url: str,
    name: str | None,
    key_ciphertext: str,
    key_hint: str,
    now: int,
) -> None:
    await tx.execute(
        "INSERT INTO pool_keys (id, account_id, provider, base_url, name, key_ciphertext, key_hint, status,"
        " created_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, NULL)",
        pool_key_id,
        account_id,
        provider,
        base_url,
        name,
        key_ciphertext,
        key_hint,
        now,
    )


async def get(db: Executor, pool_key_id: str) -> Row | None:
    return await db.fetch_one(
        f"SELECT {_COLUMNS} FROM pool_keys WHERE id = $1 AND deleted_at IS NULL", pool_key_id
    )


async def get_owned(db: Executor, *, account_id: str, pool_key_id: str) -> Row | None:
    return await db.fetch_one(
        f"SELECT {_COLUMNS} FROM pool_keys WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL",
        pool_key_id,
        account_id,
    )


async def list_owned(db: Executor, account_id: str) -> list[Row]:
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM pool_keys WHERE account_id = $1 AND deleted_at IS NULL"
        " ORDER BY created_at, id",
        account_id,
    )


async def soft_delete(tx: Executor, *, pool_key_id: str, now: int) -> None:
    await tx.execute(
        "UPDATE pool_keys SET deleted_at = $2, status = 'deleted' WHERE id = $1 AND deleted_at IS NULL",
        pool_key_id,
        now,
    )
