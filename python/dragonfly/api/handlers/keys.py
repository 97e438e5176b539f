"""/api/keys: buyer API keys."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.keys import CreateKey, UpdateKey
from dragonfly.services import keys


async def create(call: Call) -> Reply:
    body = call.json(CreateKey)
    hasher, _, _ = call.state.crypto()
    out = await keys.create_buyer_key(
        call.state.db,
        hasher,
        account_id=call.account_id,
        name=body.name,
        key_group=body.key_group,
        monthly_budget_cents=body.monthly_budget_cents,
        routing_profile_id=str(body.routing_profile_id) if body.routing_profile_id else None,
        ip_whitelist=body.ip_whitelist,
        ip_blacklist=body.ip_blacklist,
    )
    return Reply(out, 201)


async def list_(call: Call) -> dict[str, Any]:
    return {"data": await keys.list_buyer_keys(call.state.db, call.account_id)}


async def update(call: Call) -> dict[str, Any]:
    body = call.json(UpdateKey)
    return await keys.update_buyer_key(
        call.state.db, account_id=call.account_id, key_id=call.path("id"), fields=body.given()
    )


async def delete(call: Call) -> Reply:
    await keys.revoke_key(call.state.db, account_id=call.account_id, key_id=call.path("id"), kind="buyer")
    return Reply(None, 204)
