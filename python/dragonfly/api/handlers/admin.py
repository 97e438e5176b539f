"""/api/admin/*: operator actions."""

from __future__ import annotations

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.admin import Credit
from dragonfly.domain.money import cents_to_micros
from dragonfly.services import credits


async def credit(call: Call) -> Reply:
    body = call.json(Credit)
    out = await credits.credit_account(
        call.state.db,
        account_id=str(body.account_id),
        amount_micros=cents_to_micros(body.amount_cents),
        note=body.note,
    )
    return Reply(out, 201)
