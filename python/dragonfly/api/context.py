"""What a handler works with: the app's resources (built at startup), the caller, and the request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_plus

import orjson
from pydantic import BaseModel, ValidationError
from robyn import Request

from dragonfly.config import Settings
from dragonfly.domain.abuse import client_address
from dragonfly.errors import InvalidRequest, ServiceUnavailable
from dragonfly.mail import Mailer
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.security.sessions import SessionTokens
from dragonfly.services.abuse import AccountGuard
from dragonfly.storage.ports import Database
from dragonfly.storage.state.ports import StateStore

log = logging.getLogger("dragonfly.api")
M = TypeVar("M", bound=BaseModel)


@dataclass
class AppState:
    """Created by `build_app`, filled by the startup hook, emptied by the shutdown hook."""

    settings: Settings
    db_: Database | None = None
    hasher: KeyHasher | None = None
    sessions: SessionTokens | None = None
    box: SecretBox | None = None
    mailer: Mailer | None = None
    # The shared state store (Redis) when configured: the control plane reads holds from it.
    holds: StateStore | None = None
    # The abuse limits of the account surface (services/abuse.py), counted in Redis when configured.
    guard_: AccountGuard | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def db(self) -> Database:
        if self.db_ is None:
            raise ServiceUnavailable()
        return self.db_

    @property
    def guard(self) -> AccountGuard:
        if self.guard_ is None:
            raise ServiceUnavailable()
        return self.guard_

    def crypto(self) -> tuple[KeyHasher, SessionTokens, SecretBox]:
        if self.hasher is None or self.sessions is None or self.box is None:
            raise ServiceUnavailable()
        return self.hasher, self.sessions, self.box

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a background job (an admission probe) owned by the app; failures are logged, not lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("background job %s failed: %s", name, type(exc).__name__)

        task.add_done_callback(_done)


def client_of(request: Request, settings: Settings) -> str:
    """The client's address: the socket peer, or what a trusted proxy (the data plane, the load balancer)
    forwarded in `X-Forwarded-For` (`DRAGONFLY_CONTROL_TRUSTED_PROXIES`)."""
    forwarded = request.headers.get("x-forwarded-for")
    return client_address(request.ip_addr, forwarded, settings.control_trusted_proxies)


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    via: Literal["session", "management_key"]
    scope: Literal["buyer", "seller", "full"]
    roles: tuple[str, ...] = ()
    key_id: str | None = None
    key_expires_at: int | None = None


@dataclass
class Call:
    state: AppState
    request: Request
    principal_: Principal | None
    body_bytes: bytes

    @property
    def principal(self) -> Principal:
        assert self.principal_ is not None, "route declared without authentication"
        return self.principal_

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def client(self) -> str:
        return client_of(self.request, self.state.settings)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        # Robyn hands query values over still percent-encoded.
        value = self.request.query_params.get(name, None)
        text = unquote_plus(value) if value else None
        if text is not None and "\x00" in text:  # PostgreSQL cannot take a NUL (that was a 500 there)
            raise InvalidRequest(f"{name} must not contain NUL characters.", param=name)
        return text

    def json(self, model: type[M]) -> M:
        raw = self.body_bytes.strip() or b"{}"
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    """The first problem, named by its field path; never echoes the offending value (it may be a secret)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidRequest(f"{param}: {message}" if param else message, param=param)
