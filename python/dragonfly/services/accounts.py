"""Accounts: signup with email verification, the one-time trial credit, login, and `me`."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
from typing import Any

from dragonfly.config import Settings, public_base_url
from dragonfly.errors import Conflict, InvalidCredentials, InvalidRequest, NotFound
from dragonfly.ids import new_id, now_ms
from dragonfly.mail import Mailer
from dragonfly.security.passwords import hash_password, verify_password
from dragonfly.security.sessions import SessionTokens
from dragonfly.services import trial
from dragonfly.storage.ports import Database, UniqueViolation
from dragonfly.storage.sql.repos import accounts as repo

log = logging.getLogger("dragonfly.accounts")

VERIFY_PURPOSE = "verify"
VERIFY_TTL_MS = 24 * 3600 * 1000
VERIFY_PAGE_PATH = "/verify"  # the control plane's page that completes a verification (api/verify_page.py)
KNOWN_ROLES = frozenset({"operator"})
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}$")


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value):
        raise InvalidRequest("email is not a valid email address.", param="email")
    return value


def check_password(password: str) -> None:
    if not 8 <= len(password) <= 1024:
        raise InvalidRequest("password must be 8 to 1024 characters long.", param="password")


@functools.cache
def _dummy_hash() -> str:
    """A real argon2id hash of a random password: login with an unknown email still pays one verification."""
    return hash_password(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_account(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "email_verified": bool(row["email_verified"]),
        "roles": list(row["roles"]),
        "trial_credit_granted": bool(row["trial_granted"]),
    }


async def create_account(db: Database, *, email: str, password: str, verified: bool, roles: list[str]) -> str:
    """Create an account (CLI, demo seeding, signup). No trial credit: that comes with verification."""
    address = normalise_email(email)
    check_password(password)
    unknown = set(roles) - KNOWN_ROLES
    if unknown:
        raise InvalidRequest(f"unknown role(s): {', '.join(sorted(unknown))}", param="roles")
    password_hash = await asyncio.to_thread(hash_password, password)
    account_id = new_id()
    try:
        async with db.transaction() as tx:
            await repo.insert(
                tx,
                account_id=account_id,
                email=address,
                password_hash=password_hash,
                verified=verified,
                roles=roles,
                now=now_ms(),
            )
    except UniqueViolation:
        raise Conflict("An account with this email already exists.", param="email") from None
    return account_id


async def grant_role(db: Database, *, account_id: str, role: str) -> None:
    if role not in KNOWN_ROLES:
        raise InvalidRequest(f"unknown role {role!r}", param="role")
    async with db.transaction() as tx:
        row = await repo.get(tx, account_id)
        if row is None:
            raise NotFound("Account not found.")
        await repo.set_roles(tx, account_id, [*row["roles"], role])


def verification_link(settings: Settings, token: str) -> str:
    """`<public URL>/verify#token=…`: the token rides in the fragment, which a browser never sends to a
    server, so no access log, proxy or `Referer` holds it; the page (api/verify_page.py) reads it there and
    posts it to `/api/auth/verify` when the person presses its button (a mail scanner that fetches the
    link verifies nothing)."""
    base = settings.public_url or public_base_url("", settings.host, settings.port)
    return f"{base}{VERIFY_PAGE_PATH}#token={token}"


def _verification_text(settings: Settings, token: str) -> str:
    return (
        "Welcome to Dragonfly.\n\n"
        "Confirm your email address: open this link and press the button on the page.\n\n"
        f"{verification_link(settings, token)}\n\n"
        'Or send this token to POST /api/auth/verify as {"token": "..."}:\n\n'
        f"{token}\n\n"
        "The token is valid for 24 hours and can be used once.\n"
    )


async def signup(
    db: Database, mailer: Mailer, settings: Settings, *, email: str, password: str, client: str | None = None
) -> dict[str, Any]:
    """`client`: the caller's address, kept (as a digest) for the trial credit's per-address quota."""
    account_id = await create_account(db, email=email, password=password, verified=False, roles=[])
    token = secrets.token_urlsafe(32)
    async with db.transaction() as tx:
        await trial.record_origin(tx, settings, account_id=account_id, client=client, now=now_ms())
        await repo.insert_email_token(
            tx,
            token_hash=token_hash(token),
            account_id=account_id,
            purpose=VERIFY_PURPOSE,
            expires_at=now_ms() + VERIFY_TTL_MS,
        )
    address = normalise_email(email)
    try:
        await mailer.send(
            to=address, subject="Verify your Dragonfly account", text=_verification_text(settings, token)
        )
    except Exception as exc:  # the account exists; the operator sees why the mail did not leave
        log.error("verification mail for account %s not sent: %s", account_id, type(exc).__name__)
    return {"id": account_id, "email": address, "email_verified": False}


async def verify_email(
    db: Database, settings: Settings, *, token: str, client: str | None = None
) -> dict[str, Any]:
    """Consume a verification token; the first verification may grant the trial credit (services/trial.py
    says when), in the same transaction."""
    now = now_ms()
    async with db.transaction() as tx:
        account_id = await repo.consume_email_token(
            tx, token_hash=token_hash(token), purpose=VERIFY_PURPOSE, now=now
        )
        if account_id is None:
            raise InvalidRequest("The verification token is invalid, expired or already used.", param="token")
        await repo.mark_verified(tx, account_id)
        granted = await trial.grant(tx, settings, account_id=account_id, client=client, now=now)
    return {"email_verified": True, "trial_credit_granted": granted}


async def login(db: Database, sessions: SessionTokens, *, email: str, password: str) -> dict[str, Any]:
    row = await repo.get_by_email(db, email.strip().lower())
    stored = row["password_hash"] if row else _dummy_hash()
    ok = await asyncio.to_thread(verify_password, stored, password)
    if row is None or not ok:
        raise InvalidCredentials()
    return {"access_token": sessions.issue(row["id"]), "token_type": "bearer", "expires_in": sessions.ttl_s}


async def me(db: Database, account_id: str) -> dict[str, Any]:
    row = await repo.get(db, account_id)
    if row is None:
        raise NotFound("Account not found.")
    return public_account(row)
