"""Bodies of the operator's routing endpoints: /api/admin/routing/weights and
/api/admin/listings/:id/quality."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from dragonfly.api.schemas.common import Body, first_unknown
from dragonfly.api.schemas.profiles import Weights


class StrategyWeights(Body):
    """Some or all operator-tunable strategies; `null` returns a strategy to the native defaults. An
    unknown strategy (including `custom`, whose weights are per profile) or weight name is refused."""

    cost_first: Weights | None = None
    balanced: Weights | None = None
    reliability_first: Weights | None = None
    quality_first: Weights | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_strategies(cls, data: Any) -> Any:
        if (name := first_unknown(data, cls.model_fields)) is not None:
            raise ValueError(
                f"unknown strategy {name!r}; the operator sets cost_first, balanced, reliability_first "
                "and quality_first (custom takes its weights from each profile)"
            )
        return data

    def changes(self) -> dict[str, dict[str, Any] | None]:
        """The strategies the caller named: their weights as given (missing = 0), or None to reset."""
        out: dict[str, dict[str, Any] | None] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            out[name] = None if value is None else value.model_dump()
        return out


class ListingQuality(Body):
    """A number in [0, 1] overrides the computed quality; `null` returns to the computed value."""

    quality: float | None = Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)
