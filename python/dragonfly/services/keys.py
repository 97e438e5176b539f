"""Buyer API keys and management keys. The raw key is returned once, at creation; only its HMAC is kept."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from dragonfly.domain.money import micros_to_cents_floor
from dragonfly.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from dragonfly.ids import iso, new_id, now_ms, parse_iso_ms
from dragonfly.security.api_keys import KeyHasher, generate_key, key_hint
from dragonfly.services.profiles import resolve_profile_id
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import api_keys as repo
from dragonfly.storage.sql.repos import changes

SCOPES = ("buyer", "seller", "full")


def month_start_ms(now: int) -> int:
    dt = datetime.fromtimestamp(now / 1000, tz=UTC)
    return int(datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp() * 1000)


def render_buyer(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "key_group": row["key_group"],
        "monthly_budget_cents": row["monthly_budget_cents"],
        "routing_profile_id": row["routing_profile_id"],
        "ip_whitelist": row["ip_whitelist"],
        "ip_blacklist": row["ip_blacklist"],
        "key_hint": row["key_hint"],
        "created_at": iso(row["created_at"]),
    }


def render_management(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "mgmt_scope": row["mgmt_scope"],
        "expires_at": iso(row["expires_at"]),
        "key_hint": row["key_hint"],
        "created_at": iso(row["created_at"]),
    }


async def create_buyer_key(
    db: Database,
    hasher: KeyHasher,
    *,
    account_id: str,
    name: str | None = None,
    key_group: str = "default",
    monthly_budget_cents: int | None = None,
    routing_profile_id: str | None = None,
    ip_whitelist: Iterable[str] = (),
    ip_blacklist: Iterable[str] = (),
) -> dict[str, Any]:
    """Mint a buyer key; the returned dict carries the raw `key` (shown only here)."""
    if monthly_budget_cents is not None and monthly_budget_cents < 0:
        raise InvalidRequest("monthly_budget_cents must be >= 0.", param="monthly_budget_cents")
    profile_id = await resolve_profile_id(db, account_id=account_id, profile_id=routing_profile_id)
    raw = generate_key()
    key_id = new_id()
    async with db.transaction() as tx:
        await repo.insert(
            tx,
            key_id=key_id,
            account_id=account_id,
            kind="buyer",
            name=name,
            key_group=key_group,
            key_hash=hasher.hash(raw),
            key_hint=key_hint(raw),
            mgmt_scope=None,
            monthly_budget_cents=monthly_budget_cents,
            routing_profile_id=profile_id,
            ip_whitelist=list(ip_whitelist),
            ip_blacklist=list(ip_blacklist),
            expires_at=None,
            now=now_ms(),
        )
        await changes.bump(tx)
        row = await repo.get_owned(tx, account_id=account_id, key_id=key_id, kind="buyer")
    assert row is not None
    return {**render_buyer(row), "key": raw}


async def list_buyer_keys(db: Database, account_id: str) -> list[dict[str, Any]]:
    rows = await repo.list_owned(db, account_id=account_id, kind="buyer")
    spent = await repo.spent_since(db, account_id=account_id, since_ms=month_start_ms(now_ms()))
    return [
        {
            **render_buyer(r),
            "spent_this_month_cents": micros_to_cents_floor(spent.get(r["id"], 0)),
            "revoked": r["revoked_at"] is not None,
        }
        for r in rows
    ]


async def update_buyer_key(
    db: Database, *, account_id: str, key_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """PATCH semantics: only given fields change; `routing_profile_id: null` binds the default profile."""
    changes_: dict[str, Any] = {}
    for name in ("name", "monthly_budget_cents"):
        if name in fields:
            changes_[name] = fields[name]
    for name in ("ip_whitelist", "ip_blacklist"):
        if name in fields:
            changes_[name] = list(fields[name] or [])
    if "routing_profile_id" in fields:
        given = fields["routing_profile_id"]
        changes_["routing_profile_id"] = await resolve_profile_id(
            db, account_id=account_id, profile_id=None if given is None else str(given)
        )
    async with db.transaction() as tx:
        row = await repo.get_owned(tx, account_id=account_id, key_id=key_id, kind="buyer")
        if row is None:
            raise NotFound("API key not found.")
        if row["revoked_at"] is not None:
            raise Conflict("The API key is revoked.")
        await repo.update(tx, key_id, changes_)
        await changes.bump(tx)
    listed = {k["id"]: k for k in await list_buyer_keys(db, account_id)}
    return listed[key_id]


async def revoke_key(db: Database, *, account_id: str, key_id: str, kind: str) -> None:
    async with db.transaction() as tx:
        row = await repo.get_owned(tx, account_id=account_id, key_id=key_id, kind=kind)
        if row is None:
            raise NotFound("API key not found." if kind == "buyer" else "Management key not found.")
        await repo.revoke(tx, key_id=key_id, now=now_ms())
        await changes.bump(tx)


def _parse_expiry(value: str | None, now: int) -> int | None:
    if value is None:
        return None
    try:
        at = parse_iso_ms(value)
    except ValueError:
        raise InvalidRequest("expires_at must be an ISO 8601 time.", param="expires_at") from None
    if at <= now:
        raise InvalidRequest("expires_at must be in the future.", param="expires_at")
    return at


async def create_management_key(
    db: Database,
    hasher: KeyHasher,
    *,
    account_id: str,
    name: str,
    mgmt_scope: str,
    expires_at: str | None = None,
    minted_by_expires_at: int | None = None,
    minted_by_scope: str = "full",
) -> dict[str, Any]:
    """Mint a management key. When a management key mints it, the new key can be neither wider in
    scope nor longer-lived than the minting key (no expiry given: it inherits the minting key's)."""
    if mgmt_scope not in SCOPES:
        raise InvalidRequest("mgmt_scope must be buyer, seller or full.", param="mgmt_scope")
    if minted_by_scope != "full" and mgmt_scope != minted_by_scope:
        raise PermissionDenied("A management key cannot mint a key of wider scope.")
    now = now_ms()
    expiry = _parse_expiry(expires_at, now)
    if minted_by_expires_at is not None:
        if expiry is None:
            expiry = minted_by_expires_at
        elif expiry > minted_by_expires_at:
            raise PermissionDenied("A management key cannot mint a key that outlives it.")
    raw = generate_key()
    key_id = new_id()
    async with db.transaction() as tx:
        await repo.insert(
            tx,
            key_id=key_id,
            account_id=account_id,
            kind="management",
            name=name,
            key_group="default",
            key_hash=hasher.hash(raw),
            key_hint=key_hint(raw),
            mgmt_scope=mgmt_scope,
            monthly_budget_cents=None,
            routing_profile_id=None,
            ip_whitelist=[],
            ip_blacklist=[],
            expires_at=expiry,
            now=now,
        )
        await changes.bump(tx)
        row = await repo.get_owned(tx, account_id=account_id, key_id=key_id, kind="management")
    assert row is not None
    return {**render_management(row), "key": raw}


async def list_management_keys(db: Database, account_id: str) -> list[dict[str, Any]]:
    rows = await repo.list_owned(db, account_id=account_id, kind="management")
    now = now_ms()
    return [
        {
            **render_management(r),
            "revoked": r["revoked_at"] is not None,
            "expired": r["expires_at"] is not None and r["expires_at"] <= now,
        }
        for r in rows
    ]
