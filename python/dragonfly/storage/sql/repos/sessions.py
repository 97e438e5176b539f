"""Revoked dashboard sessions (table `session_revocations`, migration 016), by the JWT's `jti`."""

from __future__ import annotations

from dragonfly.storage.ports import Executor


async def revoke(tx: Executor, *, jti: str, account_id: str, expires_at: int, now: int) -> None:
    """Refuse the session `jti` from now on (idempotent); rows past their token's expiry are dropped."""
    await tx.execute(
        "INSERT INTO session_revocations (jti, account_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (jti) DO NOTHING",
        jti,
        account_id,
        expires_at,
        now,
    )
    await tx.execute("DELETE FROM session_revocations WHERE expires_at <= $1", now)


async def is_revoked(db: Executor, jti: str) -> bool:
    return await db.fetch_one("SELECT 1 AS x FROM session_revocations WHERE jti = $1", jti) is not None
