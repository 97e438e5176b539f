"""Logged-out sessions (`session_revocations`, migration 016) on both SQL backends: a revoked id is found,
revoking twice is harmless, and rows whose token has expired anyway are dropped by the next revocation."""

from __future__ import annotations

from dragonfly.ids import now_ms
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import sessions


async def test_a_revoked_session_is_found_until_its_token_would_have_expired(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        now = now_ms()
        async with db.transaction() as tx:
            await sessions.revoke(tx, jti="old", account_id="a", expires_at=now + 1_000, now=now)
            await sessions.revoke(tx, jti="live", account_id="a", expires_at=now + 3_600_000, now=now)
            await sessions.revoke(tx, jti="live", account_id="a", expires_at=now + 3_600_000, now=now)
        assert await sessions.is_revoked(db, "old") and await sessions.is_revoked(db, "live")
        assert not await sessions.is_revoked(db, "other")
        later = now + 2_000
        async with db.transaction() as tx:
            await sessions.revoke(tx, jti="next", account_id="b", expires_at=later + 60_000, now=later)
        assert not await sessions.is_revoked(db, "old")  # its token has expired: nothing left to refuse
        assert await sessions.is_revoked(db, "live") and await sessions.is_revoked(db, "next")
    finally:
        await db.close()
