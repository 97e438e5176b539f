"""The trial credit's rules in the database (migration 017): signup origins, one trial per identity, and
the daily quotas, each claimed by one statement that also decides (a conditional upsert), so that two
control planes verifying at once can never both pass the last slot."""

from __future__ import annotations

from dragonfly.storage.ports import Executor


async def insert_origin(tx: Executor, *, account_id: str, address_digest: str | None, now: int) -> None:
    await tx.execute(
        "INSERT INTO signup_origins (account_id, address_digest, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (account_id) DO NOTHING",
        account_id,
        address_digest,
        now,
    )


async def origin(db: Executor, account_id: str) -> tuple[bool, str | None]:
    """(the account has a signup origin, its address digest: None when the address was exempt)."""
    row = await db.fetch_one("SELECT address_digest FROM signup_origins WHERE account_id = $1", account_id)
    return (False, None) if row is None else (True, row["address_digest"])


async def claim_identity(tx: Executor, *, identity: str, account_id: str, now: int) -> bool:
    """True for the first claim of an identity; False when a trial already went to it."""
    inserted = await tx.execute(
        "INSERT INTO trial_identities (identity, account_id, granted_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (identity) DO NOTHING",
        identity,
        account_id,
        now,
    )
    return inserted == 1


async def release_identity(tx: Executor, *, identity: str, account_id: str) -> None:
    await tx.execute(
        "DELETE FROM trial_identities WHERE identity = $1 AND account_id = $2", identity, account_id
    )


async def claim_quota(tx: Executor, *, day: str, scope: str, subject: str, amount: int, limit: int) -> bool:
    """Add `amount` to the day's counter unless that would pass `limit`; True when added."""
    if amount > limit:
        return False
    row = await tx.fetch_one(
        "INSERT INTO trial_quotas (day, scope, subject, used) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (day, scope, subject) DO UPDATE SET used = trial_quotas.used + excluded.used"
        " WHERE trial_quotas.used + excluded.used <= $5"
        " RETURNING used",
        day,
        scope,
        subject,
        amount,
        limit,
    )
    return row is not None


async def release_quota(tx: Executor, *, day: str, scope: str, subject: str, amount: int) -> None:
    await tx.execute(
        "UPDATE trial_quotas SET used = used - $4 WHERE day = $1 AND scope = $2 AND subject = $3",
        day,
        scope,
        subject,
        amount,
    )


async def used(db: Executor, *, day: str, scope: str, subject: str) -> int:
    value = await db.fetch_val(
        "SELECT used FROM trial_quotas WHERE day = $1 AND scope = $2 AND subject = $3", day, scope, subject
    )
    return int(value or 0)


async def forget_before(tx: Executor, day: str) -> None:
    await tx.execute("DELETE FROM trial_quotas WHERE day < $1", day)
