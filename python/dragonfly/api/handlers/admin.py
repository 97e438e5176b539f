"""/api/admin/*: operator actions."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.admin import Credit, Suspend, Unsuspend
from dragonfly.domain.money import cents_to_micros
from dragonfly.services import admin_listings, credits, flagged_trades, routing_activity


async def credit(call: Call) -> Reply:
    body = call.json(Credit)
    out = await credits.credit_account(
        call.state.db,
        account_id=str(body.account_id),
        amount_micros=cents_to_micros(body.amount_cents),
        note=body.note,
    )
    return Reply(out, 201)


async def suspend_listing(call: Call) -> dict[str, Any]:
    body = call.json(Suspend)
    return await admin_listings.suspend(
        call.state.db, listing_id=call.path("id"), actor_id=call.account_id, reason=body.reason
    )


async def unsuspend_listing(call: Call) -> dict[str, Any]:
    call.json(Unsuspend)  # no fields: refuses anything but an empty body or {}
    _, _, box = call.state.crypto()
    return await admin_listings.unsuspend(
        call.state.db, call.state.settings, box, listing_id=call.path("id"), actor_id=call.account_id
    )


async def flagged(call: Call) -> dict[str, Any]:
    limit, cursor = flagged_trades.parse_page(call.query("limit"), call.query("cursor"))
    return await flagged_trades.list_flagged(call.state.db, limit=limit, cursor=cursor)


async def activity(call: Call) -> dict[str, Any]:
    query = routing_activity.parse_query(call.query("model"), call.query("profile_id"), call.query("limit"))
    return await routing_activity.recent(call.state.db, **query)
