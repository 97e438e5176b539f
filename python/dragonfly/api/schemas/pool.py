"""Bodies of /v1/pool/*."""

from __future__ import annotations

from pydantic import Field

from dragonfly.api.schemas.common import Body, Name


class CreatePoolKey(Body):
    provider: str = Field(min_length=1, max_length=64)
    base_url: str | None = Field(default=None, max_length=2048)
    api_key: str = Field(min_length=1, max_length=4096)
    name: Name | None = None
