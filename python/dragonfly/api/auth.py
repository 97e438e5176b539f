"""Who is calling: a dashboard session (JWT, as a bearer token or the browser's session cookie) or a
management key, and what each route requires.

A buyer key, an unknown/revoked/expired key or a bad token is 401 `invalid_api_key` (one body for all);
a valid credential outside its scope or role is 403 `permission_denied`.
"""

from __future__ import annotations

from enum import Enum

from robyn import Headers

from dragonfly.api.context import AppState, Principal
from dragonfly.api.session_cookies import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, read_cookies
from dragonfly.errors import InvalidApiKey, PermissionDenied
from dragonfly.ids import now_ms
from dragonfly.security.api_keys import PREFIX
from dragonfly.security.sessions import SessionClaims
from dragonfly.storage.sql.repos import accounts as accounts_repo
from dragonfly.storage.sql.repos import api_keys as keys_repo
from dragonfly.storage.sql.repos import sessions as sessions_repo


class Access(Enum):
    PUBLIC = "public"
    ANY = "any"  # any valid session or management key
    BUYER = "buyer"  # keys, routing profiles, usage, billing
    SELLER = "seller"  # pool keys, listings, contracts, probes
    KEY_ADMIN = "key_admin"  # management-key CRUD: a session or a full key
    OPERATOR = "operator"  # /api/admin/*: a session of an operator


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(state: AppState, headers: Headers, *, method: str) -> Principal:
    """The caller, from `Authorization: Bearer` (a management key or a session token), else from the
    browser's session cookie, whose state-changing calls must carry the session's CSRF token
    (api/session_cookies.py)."""
    token = bearer_token(headers)
    if token is None:
        cookie = read_cookies(headers).get(SESSION_COOKIE)
        if cookie:
            return await _cookie_session(state, headers, cookie, method)
        raise InvalidApiKey("Missing credentials: send `Authorization: Bearer <key or session token>`.")
    hasher, sessions, _ = state.crypto()
    if token.startswith(PREFIX):
        row = await keys_repo.get_by_hash(state.db, hasher.hash(token))
        if (
            row is None
            or row["kind"] != "management"
            or row["revoked_at"] is not None
            or (row["expires_at"] is not None and row["expires_at"] <= now_ms())
        ):
            raise InvalidApiKey()
        account = await accounts_repo.get(state.db, row["account_id"])
        if account is None:
            raise InvalidApiKey()
        return Principal(
            account_id=row["account_id"],
            via="management_key",
            scope=row["mgmt_scope"],
            roles=tuple(account["roles"]),
            key_id=row["id"],
            key_expires_at=row["expires_at"],
        )
    return await _session(state, sessions.read(token))


async def live_session(state: AppState, claims: SessionClaims | None) -> SessionClaims | None:
    """The claims of a valid session token that was not revoked (logged out), else None."""
    if claims is None or (claims.jti is not None and await sessions_repo.is_revoked(state.db, claims.jti)):
        return None
    return claims


async def _session(state: AppState, claims: SessionClaims | None) -> Principal:
    live = await live_session(state, claims)
    account = await accounts_repo.get(state.db, live.account_id) if live else None
    if account is None:
        raise InvalidApiKey()
    return Principal(account_id=account["id"], via="session", scope="full", roles=tuple(account["roles"]))


async def _cookie_session(state: AppState, headers: Headers, cookie: str, method: str) -> Principal:
    _, sessions, _ = state.crypto()
    claims = sessions.read(cookie)
    if claims is None or claims.jti is None:  # every cookie session has an id (api/handlers/session.py)
        raise InvalidApiKey()
    principal = await _session(state, claims)
    if method.upper() not in SAFE_METHODS and not sessions.csrf_matches(claims.jti, headers.get(CSRF_HEADER)):
        raise PermissionDenied(
            f"A change made with the session cookie needs the session's CSRF token in `{CSRF_HEADER}`."
        )
    return principal


def authorize(principal: Principal, access: Access) -> None:
    if access in (Access.PUBLIC, Access.ANY):
        return
    if access is Access.BUYER and principal.scope not in ("buyer", "full"):
        raise PermissionDenied("This management key's scope does not include buyer routes.")
    if access is Access.SELLER and principal.scope not in ("seller", "full"):
        raise PermissionDenied("This management key's scope does not include seller routes.")
    if access is Access.KEY_ADMIN and principal.scope != "full":
        raise PermissionDenied("Managing management keys needs a dashboard session or a full-scope key.")
    if access is Access.OPERATOR and (principal.via != "session" or "operator" not in principal.roles):
        raise PermissionDenied("This route needs an operator's dashboard session.")
