"""Seller pool keys: provider credentials, encrypted at rest, never returned after creation."""

from __future__ import annotations

from typing import Any

from dragonfly.config import Settings
from dragonfly.errors import InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services import providers
from dragonfly.services.upstream_urls import validate_base_url
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import pool_keys as repo


def provider_key_hint(raw: str) -> str:
    """The last four characters only, and only when the key is long enough that they reveal little."""
    return f"...{raw[-4:]}" if len(raw) >= 16 else "..."


def render(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "provider": row["provider"],
        "base_url": row["base_url"],
        "name": row["name"],
        "key_hint": row["key_hint"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
    }


async def create_pool_key(
    db: Database,
    settings: Settings,
    box: SecretBox,
    *,
    account_id: str,
    provider: str,
    base_url: str | None = None,
    api_key: str,
    name: str | None = None,
) -> dict[str, Any]:
    known = providers.find(provider)
    if known is None:
        raise InvalidRequest(
            "Unknown provider; use one of GET /v1/pool/providers or `custom`.", param="provider"
        )
    raw_url = base_url or known.default_base_url
    if not raw_url:
        raise InvalidRequest("base_url is required for a custom provider.", param="base_url")
    url = await validate_base_url(raw_url, allow_private=settings.allow_private_upstreams)
    secret = api_key.strip()
    if not secret or any(c.isspace() for c in secret):
        raise InvalidRequest("api_key must be a non-empty key without whitespace.", param="api_key")
    pool_key_id = new_id()
    async with db.transaction() as tx:
        await repo.insert(
            tx,
            pool_key_id=pool_key_id,
            account_id=account_id,
            provider=provider,
            base_url=url.url,
            name=name,
            key_ciphertext=box.seal(secret, pool_key_id),
            key_hint=provider_key_hint(secret),
            now=now_ms(),
        )
        await changes.bump(tx)
        row = await repo.get(tx, pool_key_id)
    assert row is not None
    return render(row)


async def list_pool_keys(db: Database, account_id: str) -> list[dict[str, Any]]:
    return [render(r) for r in await repo.list_owned(db, account_id)]


async def delete_pool_key(db: Database, *, account_id: str, pool_key_id: str) -> None:
    """Delete the key and pause every listing that sells through it."""
    now = now_ms()
    async with db.transaction() as tx:
        row = await repo.get_owned(tx, account_id=account_id, pool_key_id=pool_key_id)
        if row is None:
            raise NotFound("Pool key not found.")
        await listings_repo.pause_for_pool_key(tx, pool_key_id=pool_key_id, now=now)
        await repo.soft_delete(tx, pool_key_id=pool_key_id, now=now)
        await changes.bump(tx)
