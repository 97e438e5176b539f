"""/api/admin/*: operator actions."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.admin import Credit, ResolveReview, Suspend, Unsuspend
from dragonfly.api.schemas.payouts import MarkPaid
from dragonfly.domain.money import cents_to_micros
from dragonfly.services import (
    admin_listings,
    credits,
    flagged_trades,
    payouts,
    routing_activity,
    trade_reviews,
)


async def credit(call: Call) -> Reply:
    body = call.json(Credit)
    key = credits.check_idempotency_key(call.request.headers.get(credits.IDEMPOTENCY_HEADER.lower()))
    account_id, amount_micros = str(body.account_id), cents_to_micros(body.amount_cents)
    if key is None:
        out = await credits.credit_account(
            call.state.db, account_id=account_id, amount_micros=amount_micros, note=body.note
        )
        return Reply(out, 201)
    out, replayed = await credits.credit_account_once(
        call.state.db,
        account_id=account_id,
        amount_micros=amount_micros,
        note=body.note,
        operator_id=call.account_id,
        idempotency_key=key,
    )
    # As Stripe's API says of a retried call: the answer is the first call's, and this header tells so.
    return Reply(out, 201, (("idempotent-replayed", "true" if replayed else "false"),))


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
    state = flagged_trades.parse_state(call.query("state"))
    return await flagged_trades.list_flagged(call.state.db, limit=limit, cursor=cursor, state=state)


async def resolve_review(call: Call) -> dict[str, Any]:
    body = call.json(ResolveReview)
    return await trade_reviews.resolve(
        call.state.db,
        call.state.settings,
        trade_id=call.path("id"),
        action=body.action,
        note=body.note,
        actor_id=call.account_id,
    )


async def payouts_list(call: Call) -> dict[str, Any]:
    limit, cursor = flagged_trades.parse_page(call.query("limit"), call.query("cursor"))
    status = payouts.parse_status(call.query("status"))
    return await payouts.list_all(call.state.db, limit=limit, cursor=cursor, status=status)


async def mark_payout_paid(call: Call) -> dict[str, Any]:
    body = call.json(MarkPaid)
    return await payouts.mark_paid(call.state.db, call.path("id"), actor_id=call.account_id, note=body.note)


async def activity(call: Call) -> dict[str, Any]:
    query = routing_activity.parse_query(call.query("model"), call.query("profile_id"), call.query("limit"))
    return await routing_activity.recent(call.state.db, **query)
