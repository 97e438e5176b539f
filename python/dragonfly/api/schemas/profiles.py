"""Bodies of /api/routing/profiles."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dragonfly.api.schemas.common import Body, Name, Price, first_unknown
from dragonfly.services.providers import check_ids

Strategy = Literal["cost_first", "balanced", "reliability_first", "quality_first", "custom"]
RETRY_ON = ("429", "5xx", "timeout", "connect_error")
Ident = Annotated[str, Field(min_length=1, max_length=128)]
IdentList = Annotated[list[Ident], Field(max_length=256)]


def _weight() -> Any:
    return Field(default=0.0, ge=0, le=1000, strict=True)


class Weights(Body):
    """The one weight vocabulary (native `FEATURES`): a weight left out is 0; unknown names are refused."""

    price: float = _weight()
    latency: float = _weight()
    throughput: float = _weight()
    reliability: float = _weight()
    quality: float = _weight()

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if (name := first_unknown(data, cls.model_fields)) is not None:
            raise ValueError(
                f"unknown weight {name!r}; the weights are price, latency (time to first token), "
                "throughput, reliability, quality"
            )
        return data

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if not any((self.price, self.latency, self.throughput, self.reliability, self.quality)):
            raise ValueError("at least one weight must be positive")
        return self


class Fallback(Body):
    enabled: bool = True
    max_attempts: int = Field(default=3, ge=1, le=5)
    retry_on: list[str | int] = Field(default_factory=lambda: list[str | int](RETRY_ON), max_length=4)

    @field_validator("retry_on")
    @classmethod
    def _known(cls, value: list[str | int]) -> list[str | int]:
        out: list[str] = []
        for item in value:
            text = str(item)
            if text not in RETRY_ON:
                raise ValueError(
                    f"retry_on items must be among 429, 5xx, timeout, connect_error (got {item!r})"
                )
            if text not in out:
                out.append(text)
        return list(out)


class Hedge(Body):
    """`after_ms`: how long the first listing may stay silent before the next one is started beside it
    (gateway/chat.py); required when hedging is enabled."""

    enabled: bool = False
    after_ms: int | None = Field(default=None, ge=10, le=600_000)

    @model_validator(mode="after")
    def _delay_when_enabled(self) -> Hedge:
        if self.enabled and self.after_ms is None:
            raise ValueError("hedge.after_ms is required when hedging is enabled")
        return self


class _ProfileFields(Body):
    weights: Weights | None = None
    providers_allow: IdentList | None = None
    providers_deny: IdentList | None = None
    sellers_deny: IdentList | None = None
    max_input_price_per_mtok: Price | None = None
    max_output_price_per_mtok: Price | None = None
    max_ttft_ms: int | None = Field(default=None, ge=1, le=600_000)
    min_throughput_tps: float | None = Field(default=None, gt=0, le=100_000)
    fallback: Fallback | None = None
    hedge: Hedge | None = None

    @field_validator("providers_allow", "providers_deny")
    @classmethod
    def _known_providers(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value is not None:
            check_ids(value)
        if info.field_name == "providers_allow" and value == []:
            raise ValueError(
                "an empty list would allow no provider; send null (or leave it out) to allow every provider"
            )
        return value

    @field_validator("sellers_deny")
    @classmethod
    def _seller_ids(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            try:
                uuid.UUID(item)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not a seller id (the `seller_id` of a receipt, a UUID)"
                ) from None
        return value


class CreateProfile(_ProfileFields):
    name: Name
    strategy: Strategy


class UpdateProfile(_ProfileFields):
    name: Name | None = None
    strategy: Strategy | None = None

    @field_validator("name", "strategy", mode="before")
    @classmethod
    def _no_null_identity(cls, value: Any) -> Any:
        """A profile always has a name and a strategy: null is refused, not ignored."""
        if value is None:
            raise ValueError("cannot be null; leave it out to keep the current one")
        return value
