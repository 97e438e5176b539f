"""Bodies of /api/admin/*."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from dragonfly.api.schemas.common import Body


class Credit(Body):
    account_id: UUID
    amount_cents: int = Field(ge=1, le=100_000_000)
    note: str = Field(min_length=1, max_length=500)


class Suspend(Body):
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class Unsuspend(Body):
    pass


class ResolveReview(Body):
    """`uphold`: the seller over-reported; the buyer is refunded the excess. `dismiss`: the report stands."""

    action: Literal["uphold", "dismiss"]
    note: str | None = Field(default=None, min_length=1, max_length=500)
