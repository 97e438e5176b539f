"""Who is calling: a dashboard session (JWT) or a management key, and what each route requires.

A buyer key, an unknown/revoked/expired key or a bad token is 401 `invalid_api_key` (one body for all);
a valid credential outside its scope or role is 403 `permission_denied`.
"""

from __future__ import annotations

from enum import Enum

from robyn import Headers

from dragonfly.api.context import AppState, Principal
from dragonfly.errors import InvalidApiKey, PermissionDenied
from dragonfly.ids import now_ms
from dragonfly.security.api_keys import PREFIX
from dragonfly.storage.sql.repos import accounts as accounts_repo
from dragonfly.storage.sql.repos import api_keys as keys_repo


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


async def authenticate(state: AppState, headers: Headers) -> Principal:
    token = bearer_token(headers)
    if token is None:
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
    account_id = sessions.verify(token)
    account = await accounts_repo.get(state.db, account_id) if account_id else None
    if account is None:
        raise InvalidApiKey()
    return Principal(account_id=account["id"], via="session", scope="full", roles=tuple(account["roles"]))


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
