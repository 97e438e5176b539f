"""Bodies of /v1/market/listings."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import Field

from dragonfly.api.schemas.common import Body, PositiveInt, Price

Kind = Literal["chat", "embeddings", "speech"]
KINDS: tuple[Kind, ...] = ("chat", "embeddings", "speech")
# A market model name, e.g. `deepseek/deepseek-chat` (also the operator's reference-price path).
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"


class AutoFollow(Body):
    mode: Literal["off", "lowest", "median"] = "off"
    offset_pct: Decimal = Field(default=Decimal(0), ge=-90, le=1000)
    floor_per_mtok: Price | None = None


class _ListingFields(Body):
    cached_input_price_per_mtok: Price | None = None
    price_multiplier: Decimal | None = Field(default=None, gt=0, le=100, max_digits=12)
    payout_floor_per_mtok: Price | None = None
    rpm_cap: PositiveInt | None = None
    concurrency_cap: PositiveInt | None = None
    auto_follow: AutoFollow | None = None
    context_length: PositiveInt | None = None
    # Tokenizer for Dragonfly's own usage count; omitted = derived from the upstream model name.
    encoding: Literal["o200k_base", "cl100k_base"] | None = None
    # What input_price_per_mtok is per: tokens, or (speech listings only) input characters.
    price_unit: Literal["token", "character"] | None = None


class CreateListing(_ListingFields):
    pool_key_id: UUID
    model: str = Field(min_length=1, max_length=128, pattern=MODEL_PATTERN)
    upstream_model: str | None = Field(default=None, min_length=1, max_length=256)
    kind: Kind = "chat"
    # Required unless price_multiplier prices the listing from the model's reference (services/listings.py).
    input_price_per_mtok: Price | None = None
    output_price_per_mtok: Price | None = None


class UpdateListing(_ListingFields):
    input_price_per_mtok: Price | None = None
    output_price_per_mtok: Price | None = None
    status: Literal["paused", "active"] | None = None
