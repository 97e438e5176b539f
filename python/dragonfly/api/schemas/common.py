"""Shared schema pieces: the strict base model and the field types several resources use."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from dragonfly.domain.money import parse_price


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, object]:
        """The fields the caller actually sent (a PATCH distinguishes absent from null)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


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


# Decimal USD per 1M tokens in, integer micro-USD per 1M tokens out.
Price = Annotated[int, BeforeValidator(_price)]
Cidr = Annotated[str, AfterValidator(_cidr)]
CidrList = Annotated[list[Cidr], Field(max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
KeyGroup = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
PositiveInt = Annotated[int, Field(ge=1, le=1_000_000_000)]
