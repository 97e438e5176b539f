"""Shared schema pieces: the strict base model and the field types several resources use."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from dragonfly.domain.key_rules import KEY_GROUP_PATTERN
from dragonfly.domain.money import parse_price


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """No NUL character in any text: PostgreSQL cannot store one (that was a 500 there)."""
        if _has_nul(value):
            raise ValueError("text must not contain NUL characters")
        return value

    def given(self) -> dict[str, object]:
        """The fields the caller actually sent (a PATCH distinguishes absent from null)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def _has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL anywhere (iterative: nesting is bounded only by the body)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
    return False


def first_unknown(data: Any, known: Iterable[str]) -> str | None:
    """The first (sorted) key of a JSON object that is not among `known`, cut for an error message; None
    when every key is known or `data` is not an object. For validators that name the allowed values in
    their refusal rather than pydantic's generic "extra inputs are not permitted"."""
    if not isinstance(data, dict):
        return None
    allowed = set(known)
    unknown = sorted(str(k) for k in data if k not in allowed)
    return unknown[0][:40] if unknown else None


def _price(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("price must be a decimal string of USD per 1M tokens")
    return parse_price(value)


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address or CIDR") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        mapped = net.network_address.ipv4_mapped
        net = ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}")
    return str(net)


# Decimal USD per 1M tokens in, integer micro-USD per 1M tokens out. The JSON Schema (api/openapi.py)
# describes what the caller sends, not the integer the handler sees.
_PRICE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$"},
        {"type": "number", "minimum": 0, "maximum": 10_000},
    ],
    "description": 'USD per 1M tokens: a decimal string such as "0.27" (a JSON number is accepted too), '
    "at most 6 decimal places and at most 10000.",
}
Price = Annotated[int, BeforeValidator(_price), WithJsonSchema(_PRICE_SCHEMA)]
Cidr = Annotated[str, AfterValidator(_cidr)]
CidrList = Annotated[list[Cidr], Field(max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
KeyGroup = Annotated[str, Field(pattern=KEY_GROUP_PATTERN)]
PositiveInt = Annotated[int, Field(ge=1, le=1_000_000_000)]
