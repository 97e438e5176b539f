"""Bodies of /api/keys and /api/management-keys."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from dragonfly.api.schemas.common import Body, CidrList, KeyGroup, Name


class CreateKey(Body):
    name: Name | None = None
    key_group: KeyGroup = "default"
    monthly_budget_cents: int | None = Field(default=None, ge=0, le=10**12)
    routing_profile_id: UUID | None = None
    ip_whitelist: CidrList = Field(default_factory=list)
    ip_blacklist: CidrList = Field(default_factory=list)


class UpdateKey(Body):
    name: Name | None = None
    monthly_budget_cents: int | None = Field(default=None, ge=0, le=10**12)
    routing_profile_id: UUID | None = None
    ip_whitelist: CidrList | None = None
    ip_blacklist: CidrList | None = None


class CreateManagementKey(Body):
    name: Name
    mgmt_scope: Literal["buyer", "seller", "full"]
    expires_at: str | None = Field(default=None, max_length=64)
