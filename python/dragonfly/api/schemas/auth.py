"""Bodies of /api/auth/*."""

from __future__ import annotations

from pydantic import Field

from dragonfly.api.schemas.common import Body


class Signup(Body):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class Verify(Body):
    token: str = Field(min_length=1, max_length=256)


class Login(Body):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
