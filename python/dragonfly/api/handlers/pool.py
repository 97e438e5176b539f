"""/v1/pool/*: the provider catalogue and the seller's provider keys."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.pool import CreatePoolKey
from dragonfly.services import market_health, pool_keys, providers


async def list_providers(call: Call) -> dict[str, Any]:
    return {"data": providers.list_providers(await market_health.provider_health(call.state.db))}


async def create_key(call: Call) -> Reply:
    body = call.json(CreatePoolKey)
    _, _, box = call.state.crypto()
    out = await pool_keys.create_pool_key(
        call.state.db,
        call.state.settings,
        box,
        account_id=call.account_id,
        provider=body.provider,
        base_url=body.base_url,
        api_key=body.api_key,
        name=body.name,
    )
    return Reply(out, 201)


async def list_keys(call: Call) -> dict[str, Any]:
    return {"data": await pool_keys.list_pool_keys(call.state.db, call.account_id)}


async def delete_key(call: Call) -> Reply:
    await pool_keys.delete_pool_key(call.state.db, account_id=call.account_id, pool_key_id=call.path("id"))
    return Reply(None, 204)
