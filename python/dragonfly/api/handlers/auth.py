"""/api/auth/*: signup, verify, login, me."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.auth import Login, Signup, Verify
from dragonfly.errors import ServiceUnavailable
from dragonfly.services import accounts


async def signup(call: Call) -> Reply:
    body = call.json(Signup)
    if call.state.mailer is None:
        raise ServiceUnavailable()
    await call.state.guard.signup(call.client)  # before argon2 (services/abuse.py)
    out = await accounts.signup(
        call.state.db,
        call.state.mailer,
        call.state.settings,
        email=body.email,
        password=body.password,
        client=call.client,
    )
    return Reply(out, 201)


async def verify(call: Call) -> dict[str, Any]:
    body = call.json(Verify)
    await call.state.guard.verify(call.client)
    return await accounts.verify_email(
        call.state.db, call.state.settings, token=body.token, client=call.client
    )


async def login(call: Call) -> dict[str, Any]:
    body = call.json(Login)
    _, sessions, _ = call.state.crypto()
    async with call.state.guard.login(call.client, body.email):  # refuses before argon2 runs
        return await accounts.login(call.state.db, sessions, email=body.email, password=body.password)


async def me(call: Call) -> dict[str, Any]:
    return await accounts.me(call.state.db, call.account_id)
