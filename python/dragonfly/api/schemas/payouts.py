"""Bodies of the seller's /v1/market/payouts and the operator's /api/admin/payouts endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from dragonfly.api.schemas.common import Body
from dragonfly.domain.money import parse_usd


def _amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("amount_usd must be a decimal string of USD")
    return parse_usd(value)


# Decimal USD in, integer micro-USD out; the JSON Schema describes what the caller sends.
_AMOUNT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$"},
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000},
    ],
    "description": 'USD: a decimal string such as "12.50" (a JSON number is accepted too), more than 0, '
    "at most 6 decimal places and at most 1000000.",
}
UsdAmount = Annotated[int, BeforeValidator(_amount), WithJsonSchema(_AMOUNT_SCHEMA)]


class PayoutRequest(Body):
    """A payout of part of the seller's available earnings."""

    amount_usd: UsdAmount


class MarkPaid(Body):
    """The operator's record that the payout's money left (a transfer reference, say)."""

    note: str | None = Field(default=None, min_length=1, max_length=500)
