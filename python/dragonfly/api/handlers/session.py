"""/api/auth/session: the browser's login and logout (cookies and CSRF: api/session_cookies.py).

`POST /api/auth/login` stays the API clients' login (the token in the JSON answer); these two are the
dashboard's, whose token never reaches a script.
"""

from __future__ import annotations

from typing import Any

from dragonfly.api.auth import live_session
from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.auth import Login
from dragonfly.api.session_cookies import CSRF_HEADER, SESSION_COOKIE, CookiePolicy, read_cookies
from dragonfly.errors import InvalidApiKey, InvalidRequest, PermissionDenied
from dragonfly.ids import now_ms
from dragonfly.services import accounts
from dragonfly.storage.sql.repos import sessions as sessions_repo

# What a browser says about where a request comes from (`Sec-Fetch-Site`); absent from other clients.
_OWN_SITE = frozenset({"same-origin", "none"})


def _policy(call: Call) -> CookiePolicy:
    return CookiePolicy.from_public_url(call.state.settings.public_url)


def _same_origin_json(call: Call) -> None:
    """Log in only from our own pages: a cross-site form cannot send JSON, and a browser names the site."""
    site = call.request.headers.get("sec-fetch-site")
    if site and site.strip().lower() not in _OWN_SITE:
        raise PermissionDenied("A session can only be opened from the dashboard's own pages.")
    kind = (call.request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise InvalidRequest("Send the login as JSON (`content-type: application/json`).")


async def create(call: Call) -> Reply:
    """Log in for the browser: sets the session cookie (HttpOnly) and the CSRF cookie.

    The answer holds the CSRF token (also in the `df_csrf` cookie) and the account, never the session
    token. Every state-changing call made with the cookie must echo the token in `x-csrf-token`."""
    _same_origin_json(call)
    body = call.json(Login)
    _, sessions, _ = call.state.crypto()
    # The same abuse limits as `POST /api/auth/login` (services/abuse.py), refused before argon2 runs.
    async with call.state.guard.login(call.client, body.email):
        out = await accounts.login(call.state.db, sessions, email=body.email, password=body.password)
    token = str(out["access_token"])
    claims = sessions.read(token)
    if claims is None or claims.jti is None:  # issued just now: cannot happen
        raise InvalidApiKey()
    csrf = sessions.csrf_token(claims.jti)
    answer: dict[str, Any] = {
        "account": await accounts.me(call.state.db, claims.account_id),
        "csrf_token": csrf,
        "expires_in": sessions.ttl_s,
    }
    return Reply(answer, 200, headers=tuple(_policy(call).set_session(token, csrf, sessions.ttl_s)))


async def delete(call: Call) -> Reply:
    """Log out the browser: revokes the cookie's session and clears both cookies.

    A live session cookie needs its CSRF token in `x-csrf-token` (403 otherwise); without a live one the
    cookies are cleared all the same. Bearer credentials are not touched."""
    _, sessions, _ = call.state.crypto()
    cookie = read_cookies(call.request.headers).get(SESSION_COOKIE)
    claims = await live_session(call.state, sessions.read(cookie)) if cookie else None
    if claims is not None and claims.jti is not None:
        if not sessions.csrf_matches(claims.jti, call.request.headers.get(CSRF_HEADER)):
            raise PermissionDenied(f"Logging out needs the session's CSRF token in `{CSRF_HEADER}`.")
        now = now_ms()
        async with call.state.db.transaction() as tx:
            await sessions_repo.revoke(
                tx,
                jti=claims.jti,
                account_id=claims.account_id,
                expires_at=claims.expires_at * 1000,
                now=now,
            )
    return Reply(None, 204, headers=tuple(_policy(call).clear()))
