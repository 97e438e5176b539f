"""/api/billing/* and /api/usage*: the buyer's balance, journal lines and usage reports."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.services import billing, paging, usage


async def balance(call: Call) -> dict[str, Any]:
    return await billing.balance(call.state.db, call.account_id, call.state.holds)


async def transactions(call: Call) -> dict[str, Any]:
    limit, cursor = paging.parse_page(call.query("limit"), call.query("cursor"))
    return await billing.transactions(call.state.db, call.account_id, limit=limit, cursor=cursor)


async def usage_totals(call: Call) -> dict[str, Any]:
    start, end = usage.parse_window(call.query("from"), call.query("to"))
    return await usage.totals(call.state.db, call.account_id, start_ms=start, end_ms=end)


async def usage_by_key(call: Call) -> dict[str, Any]:
    """Usage per key over the window; `group` keeps only the keys of one `key_group`."""
    start, end = usage.parse_window(call.query("from"), call.query("to"))
    group = usage.parse_group(call.query("group"))
    return await usage.by_key(call.state.db, call.account_id, start_ms=start, end_ms=end, group=group)


async def usage_by_group(call: Call) -> dict[str, Any]:
    """Usage per `key_group` over the window, with how many of the group's keys had trades."""
    start, end = usage.parse_window(call.query("from"), call.query("to"))
    return await usage.by_group(call.state.db, call.account_id, start_ms=start, end_ms=end)


async def usage_daily(call: Call) -> dict[str, Any]:
    return await usage.daily(call.state.db, call.account_id, days=usage.parse_days(call.query("days")))
