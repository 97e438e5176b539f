"""Abuse limits on the account surface (docs/operator.md, "Abuse limits").

Every limit is checked before the work it protects: a refused login or signup never reaches argon2, a
refused authentication never reaches the key lookup. Refusals are 429 `rate_limited` with `retry-after`
(seconds until the window closes).

- `login`: login attempts per client address, every attempt counted: 20 a minute.
- `login-fail`: login attempts per email (a keyed digest of it): each takes a slot before the password
  is checked, a success clears them all: 5 per 15 minutes.
- `signup`: signup attempts per client address: 5 an hour.
- `verify`: verification attempts per client address: 20 a minute.
- `auth-fail`: bad credentials (a session or a management key that was sent and refused) on the
  authenticated routes, per client address; past the limit every authenticated request from the address
  is refused until the window closes: 30 a minute.
- `mk-new`: new client addresses per management key: the first use of a key from an address takes a
  slot, and the address stays known to that key for the window; past the limit the key is refused from
  any address it has not been used from in the window: 10 an hour. A script or CI job calling from a few
  addresses never meets it; a leaked key tried from many addresses does.

A login takes its failure slot before argon2 runs, so concurrent guesses cannot overrun the limit: five in
flight take all five, the sixth is refused at once. Once an email has used its slots the right password is
refused too until the window closes: answering it normally would tell a guesser, at full speed, which
guess was right. Per-address rules skip exempt addresses (`DRAGONFLY_LIMIT_EXEMPT_ADDRESSES`, loopback by
default: the host's own tools).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from dragonfly.config import Rate, Settings
from dragonfly.domain.abuse import limit_subject
from dragonfly.errors import InvalidApiKey, RateLimited
from dragonfly.storage.state.limits import RateLimiter

T = TypeVar("T")
log = logging.getLogger("dragonfly.abuse")
PREFIX = "df:rl:"


class AccountGuard:
    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self._limiter = limiter
        self._settings = settings
        self._email_key = hashlib.sha256(b"dragonfly abuse limits\0" + settings.secret_key.encode()).digest()

    def address_subject(self, client: str) -> str | None:
        """What the per-address rules count for this client; None when the address is exempt."""
        return limit_subject(client, self._settings.limit_exempt_addresses)

    def _email_subject(self, email: str) -> str:
        normal = email.strip().lower().encode()
        return hmac.new(self._email_key, normal, hashlib.sha256).hexdigest()[:32]

    async def _take(self, rule: str, rate: Rate, subject: str | None, what: str) -> str | None:
        """Count one event of `rule`; 429 when its window is full. Returns the counter's key."""
        if not rate.limit or subject is None:
            return None
        key = f"{PREFIX}{rule}:{subject}"
        verdict = await self._limiter.take(key, rate.limit, rate.window_s * 1000)
        if not verdict.allowed:
            raise _refused(what, verdict.retry_after_s)
        return key

    async def signup(self, client: str) -> None:
        rate = self._settings.limit_signup_per_address
        await self._take("signup", rate, self.address_subject(client), "sign-ups from this address")

    async def verify(self, client: str) -> None:
        rate = self._settings.limit_verify_per_address
        await self._take(
            "verify", rate, self.address_subject(client), "verification attempts from this address"
        )

    @asynccontextmanager
    async def login(self, client: str, email: str) -> AsyncIterator[None]:
        """Around the password check: refuses (429) before it when the address or the email is over its
        limit; a success clears the email's failures, a failure (any exception) keeps its slot."""
        s = self._settings
        await self._take(
            "login",
            s.limit_login_per_address,
            self.address_subject(client),
            "login attempts from this address",
        )
        failures = await self._take(
            "login-fail",
            s.limit_login_failures_per_email,
            self._email_subject(email),
            "failed logins for this account",
        )
        yield
        if failures is not None:
            await self._limiter.clear(failures)

    async def authenticate(self, client: str, attempt: Callable[[], Awaitable[T]], *, presented: bool) -> T:
        """Run `attempt` (the credential check) unless the address is over its bad-credential limit; count
        a credential that was `presented` (an Authorization or Cookie header) and refused (`InvalidApiKey`)
        against the address. A request without credentials costs no look-up and is not counted."""
        rate, subject = self._settings.limit_auth_failures_per_address, self.address_subject(client)
        if not rate.limit or subject is None or not presented:
            return await attempt()
        key = f"{PREFIX}auth-fail:{subject}"
        verdict = await self._limiter.check(key, rate.limit, rate.window_s * 1000)
        if not verdict.allowed:
            raise _refused("requests with invalid credentials from this address", verdict.retry_after_s)
        try:
            return await attempt()
        except InvalidApiKey:
            await self._limiter.take(key, rate.limit, rate.window_s * 1000)
            raise

    async def management_key_address(self, key_id: str, client: str) -> None:
        """Count `client` as a new address of the management key `key_id` unless the key was used from it
        in the current window; 429 when the key has used its new addresses. Exempt addresses are free."""
        rate, subject = self._settings.limit_mgmt_key_new_addresses, self.address_subject(client)
        if not rate.limit or subject is None:
            return
        window_ms = rate.window_s * 1000
        seen = f"{PREFIX}mk-seen:{key_id}:{subject}"
        if not (await self._limiter.check(seen, 1, window_ms)).allowed:
            return  # used from this address in the window: known
        verdict = await self._limiter.take(f"{PREFIX}mk-new:{key_id}", rate.limit, window_ms)
        if not verdict.allowed:
            log.warning("management key %s refused from a new address: over its new-address limit", key_id)
            raise _refused("new addresses using this management key", verdict.retry_after_s)
        await self._limiter.take(seen, 1, window_ms)

    async def close(self) -> None:
        await self._limiter.close()


def _refused(what: str, retry_after_s: int) -> RateLimited:
    return RateLimited(f"Too many {what}; retry in {retry_after_s} s.", retry_after_s=retry_after_s)
