"""Buyer and management API keys. Only the HMAC of a key is stored; lists are JSON text."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.storage.ports import Executor, Row

_COLUMNS = (
    "id, account_id, kind, name, key_group, key_hash, key_hint, mgmt_scope, monthly_budget_cents,"
    " routing_profile_id, ip_whitelist, ip_blacklist, expires_at, revoked_at, created_at"
)
# Columns a PATCH may change, mapped to how their value is stored.
UPDATABLE = ("name", "monthly_budget_cents", "routing_profile_id", "ip_whitelist", "ip_blacklist")


def _decode(row: Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    out["ip_whitelist"] = orjson.loads(out["ip_whitelist"] or "[]")
    out["ip_blacklist"] = orjson.loads(out["ip_blacklist"] or "[]")
    return out


def _encode(column: str, value: Any) -> Any:
    if column in ("ip_whitelist", "ip_blacklist"):
        return orjson.dumps(list(value)).decode()
    return value


async def insert(
    tx: Executor,
    *,
    key_id: str,
    account_id: str,
    kind: str,
    name: str | None,
    key_group: str,
    key_hash: str,
    key_hint: str,
    mgmt_scope: str | None,
    monthly_budget_cents: int | None,
    routing_profile_id: str | None,
    ip_whitelist: list[str],
    ip_blacklist: list[str],
    expires_at: int | None,
    now: int,
) -> None:
    await tx.execute(
        "INSERT INTO api_keys (id, account_id, kind, name, key_group, key_hash, key_hint, mgmt_scope,"
        " monthly_budget_cents, routing_profile_id, ip_whitelist, ip_blacklist, expires_at, revoked_at,"
        " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14)",
        key_id,
        account_id,
        kind,
        name,
        key_group,
        key_hash,
        key_hint,
        mgmt_scope,
        monthly_budget_cents,
        routing_profile_id,
        _encode("ip_whitelist", ip_whitelist),
        _encode("ip_blacklist", ip_blacklist),
        expires_at,
        now,
    )


async def get_by_hash(db: Executor, key_hash: str) -> Row | None:
    return _decode(await db.fetch_one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash))


async def get_owned(db: Executor, *, account_id: str, key_id: str, kind: str) -> Row | None:
    return _decode(
        await db.fetch_one(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND account_id = $2 AND kind = $3",
            key_id,
            account_id,
            kind,
        )
    )


async def list_owned(db: Executor, *, account_id: str, kind: str) -> list[Row]:
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM api_keys WHERE account_id = $1 AND kind = $2 ORDER BY created_at, id",
        account_id,
        kind,
    )
    return [r for r in (_decode(row) for row in rows) if r is not None]


async def update(tx: Executor, key_id: str, changes: dict[str, Any]) -> None:
    cols = [c for c in UPDATABLE if c in changes]
    if not cols:
        return
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    await tx.execute(
        f"UPDATE api_keys SET {sets} WHERE id = $1", key_id, *(_encode(c, changes[c]) for c in cols)
    )


async def revoke(tx: Executor, *, key_id: str, now: int) -> None:
    await tx.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", key_id, now)


async def rebind_profile(tx: Executor, *, account_id: str, old_profile_id: str, new_profile_id: str) -> int:
    return await tx.execute(
        "UPDATE api_keys SET routing_profile_id = $3 WHERE account_id = $1 AND routing_profile_id = $2",
        account_id,
        old_profile_id,
        new_profile_id,
    )


async def spent_since(db: Executor, *, account_id: str, since_ms: int) -> dict[str, int]:
    """Micro-USD spent per buyer key of the account since `since_ms` (from settled trades)."""
    rows = await db.fetch_all(
        "SELECT key_id, COALESCE(SUM(cost_micros), 0) AS spent FROM trades"
        " WHERE buyer_account_id = $1 AND created_at >= $2 GROUP BY key_id",
        account_id,
        since_ms,
    )
    return {str(r["key_id"]): int(r["spent"]) for r in rows}
