"""/api/management-keys: keys for the management API (session or full-scope key only)."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.keys import CreateManagementKey
from dragonfly.services import keys


async def create(call: Call) -> Reply:
    body = call.json(CreateManagementKey)
    hasher, _, _ = call.state.crypto()
    p = call.principal
    out = await keys.create_management_key(
        call.state.db,
        hasher,
        account_id=p.account_id,
        name=body.name,
        mgmt_scope=body.mgmt_scope,
        expires_at=body.expires_at,
        minted_by_expires_at=p.key_expires_at if p.via == "management_key" else None,
        minted_by_scope=p.scope,
    )
    return Reply(out, 201)


async def list_(call: Call) -> dict[str, Any]:
    return {"data": await keys.list_management_keys(call.state.db, call.account_id)}


async def delete(call: Call) -> Reply:
    await keys.revoke_key(
        call.state.db, account_id=call.account_id, key_id=call.path("id"), kind="management"
    )
    return Reply(None, 204)
