"""Accounts and their single-use email tokens (stored as sha256 hashes, never in clear)."""

from __future__ import annotations

import orjson

from dragonfly.storage.ports import Executor, Row

_COLUMNS = "id, email, password_hash, email_verified, roles, trial_granted, created_at"


def _decode(row: Row | None) -> Row | None:
    if row is None:
        return None
    out = dict(row)
    out["roles"] = orjson.loads(out["roles"] or "[]")
    out["email_verified"] = bool(out["email_verified"])
    out["trial_granted"] = bool(out["trial_granted"])
    return out


async def insert(
    tx: Executor,
    *,
    account_id: str,
    email: str,
    password_hash: str,
    verified: bool,
    roles: list[str],
    now: int,
) -> None:
    await tx.execute(
        "INSERT INTO accounts (id, email, password_hash, email_verified, roles, trial_granted, created_at)"
        " VALUES ($1, $2, $3, $4, $5, 0, $6)",
        account_id,
        email,
        password_hash,
        1 if verified else 0,
        orjson.dumps(sorted(set(roles))).decode(),
        now,
    )


async def get(db: Executor, account_id: str) -> Row | None:
    return _decode(await db.fetch_one(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id))


async def get_by_email(db: Executor, email: str) -> Row | None:
    return _decode(await db.fetch_one(f"SELECT {_COLUMNS} FROM accounts WHERE email = $1", email))


async def set_roles(tx: Executor, account_id: str, roles: list[str]) -> None:
    await tx.execute(
        "UPDATE accounts SET roles = $2 WHERE id = $1", account_id, orjson.dumps(sorted(set(roles))).decode()
    )


async def mark_verified(tx: Executor, account_id: str) -> None:
    await tx.execute("UPDATE accounts SET email_verified = 1 WHERE id = $1", account_id)


async def claim_trial(tx: Executor, account_id: str) -> bool:
    """Flip `trial_granted` once; True only for the caller that flipped it."""
    changed = await tx.execute(
        "UPDATE accounts SET trial_granted = 1 WHERE id = $1 AND trial_granted = 0", account_id
    )
    return changed == 1


async def insert_email_token(
    tx: Executor, *, token_hash: str, account_id: str, purpose: str, expires_at: int
) -> None:
    await tx.execute(
        "INSERT INTO email_tokens (token_hash, account_id, purpose, expires_at, used_at)"
        " VALUES ($1, $2, $3, $4, NULL)",
        token_hash,
        account_id,
        purpose,
        expires_at,
    )


async def consume_email_token(tx: Executor, *, token_hash: str, purpose: str, now: int) -> str | None:
    """Mark a live token used and return its account id; None if unknown, used, expired or foreign."""
    row = await tx.fetch_one(
        "SELECT account_id FROM email_tokens"
        " WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        token_hash,
        purpose,
        now,
    )
    if row is None:
        return None
    changed = await tx.execute(
        "UPDATE email_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL", token_hash, now
    )
    return str(row["account_id"]) if changed == 1 else None
