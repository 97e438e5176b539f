"""/api/admin/routing/weights and /api/admin/listings/:id/quality: the operator's routing inputs."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.schemas.routing_admin import ListingQuality, StrategyWeights
from dragonfly.services import listing_quality, routing_weights


async def get_weights(call: Call) -> dict[str, Any]:
    return await routing_weights.current(call.state.db)


async def put_weights(call: Call) -> dict[str, Any]:
    body = call.json(StrategyWeights)
    return await routing_weights.update(call.state.db, body.changes(), by=call.account_id)


async def get_quality(call: Call) -> dict[str, Any]:
    return await listing_quality.get_quality(call.state.db, call.path("id"))


async def put_quality(call: Call) -> dict[str, Any]:
    body = call.json(ListingQuality)
    return await listing_quality.set_override(
        call.state.db, call.path("id"), quality=body.quality, by=call.account_id
    )
