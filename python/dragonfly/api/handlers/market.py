"""/v1/market/health, /v1/market/trade-reviews and /v1/market/payouts: how the market is doing, the
seller's flagged trades and their reviews, and the seller's payouts."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.payouts import PayoutRequest
from dragonfly.services import flagged_trades, market_health, payouts


async def health(call: Call) -> dict[str, Any]:
    window_s = market_health.parse_window(call.query("window_s"))
    return await market_health.market(call.state.db, window_s=window_s)


async def trade_reviews(call: Call) -> dict[str, Any]:
    limit, cursor = flagged_trades.parse_page(call.query("limit"), call.query("cursor"))
    state = flagged_trades.parse_state(call.query("state"))
    return await flagged_trades.list_reviews(
        call.state.db, call.account_id, limit=limit, cursor=cursor, state=state
    )


async def request_payout(call: Call) -> Reply:
    body = call.json(PayoutRequest)
    out = await payouts.request_payout(call.state.db, call.account_id, amount_micros=body.amount_usd)
    return Reply(out, 201)


async def list_payouts(call: Call) -> dict[str, Any]:
    # Payout ids are UUIDv7 cursors, as trade ids are.
    limit, cursor = flagged_trades.parse_page(call.query("limit"), call.query("cursor"))
    status = payouts.parse_status(call.query("status"))
    return await payouts.list_payouts(
        call.state.db, call.account_id, limit=limit, cursor=cursor, status=status
    )
