"""/v1/market/earnings* and /v1/market/settlements: the seller's money."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.services import earnings, paging


def _q(call: Call, name: str) -> str | None:
    return call.query(name)  # decoded by Call.query


async def overview(call: Call) -> dict[str, Any]:
    return await earnings.overview(call.state.db, call.account_id)


async def summary(call: Call) -> dict[str, Any]:
    return await earnings.summary(call.state.db, call.account_id, start=_q(call, "from"), end=_q(call, "to"))


async def timeseries(call: Call) -> dict[str, Any]:
    bucket = earnings.parse_bucket(_q(call, "bucket"))
    return await earnings.timeseries(
        call.state.db, call.account_id, bucket=bucket, start=_q(call, "from"), end=_q(call, "to")
    )


async def monthly(call: Call) -> dict[str, Any]:
    months = earnings.parse_months(_q(call, "months"))
    return await earnings.monthly(call.state.db, call.account_id, months=months)


async def settlements(call: Call) -> dict[str, Any]:
    limit, cursor = paging.parse_page(_q(call, "limit"), _q(call, "cursor"))
    return await earnings.settlements(call.state.db, call.account_id, limit=limit, cursor=cursor)
