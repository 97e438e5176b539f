"""/api/routing/profiles."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.profiles import CreateProfile, UpdateProfile
from dragonfly.services import profiles


async def list_(call: Call) -> dict[str, Any]:
    return {"data": await profiles.list_profiles(call.state.db, call.account_id)}


async def get(call: Call) -> dict[str, Any]:
    return await profiles.get_profile(call.state.db, account_id=call.account_id, profile_id=call.path("id"))


async def create(call: Call) -> Reply:
    body = call.json(CreateProfile)
    fields = body.model_dump(include=body.model_fields_set - {"name", "strategy"})
    out = await profiles.create_profile(
        call.state.db, account_id=call.account_id, name=body.name, strategy=body.strategy, fields=fields
    )
    return Reply(out, 201)


async def update(call: Call) -> dict[str, Any]:
    body = call.json(UpdateProfile)
    fields = body.model_dump(include=body.model_fields_set)
    return await profiles.update_profile(
        call.state.db, account_id=call.account_id, profile_id=call.path("id"), fields=fields
    )


async def delete(call: Call) -> Reply:
    await profiles.delete_profile(call.state.db, account_id=call.account_id, profile_id=call.path("id"))
    return Reply(None, 204)
