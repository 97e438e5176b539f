"""Bodies of the operator's /api/admin/reference-prices endpoints."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from dragonfly.api.schemas.common import Body, Price


class ReferencePrice(Body):
    """The operator's reference price of a model, USD per 1M tokens (decimal strings)."""

    input_price_per_mtok: Price
    output_price_per_mtok: Price
    cached_input_price_per_mtok: Price | None = None

    @model_validator(mode="after")
    def _cached_not_above_input(self) -> Self:
        cached = self.cached_input_price_per_mtok
        if cached is not None and cached > self.input_price_per_mtok:
            raise ValueError("cached_input_price_per_mtok cannot be above input_price_per_mtok")
        return self

    def prices(self) -> tuple[int, int, int | None]:
        return (self.input_price_per_mtok, self.output_price_per_mtok, self.cached_input_price_per_mtok)
