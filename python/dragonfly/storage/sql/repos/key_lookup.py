"""One buyer key by its hash: the data plane's read-through for a key its snapshot does not know yet."""

from __future__ import annotations

from dragonfly.storage.ports import Executor


async def buyer_key_is_live(db: Executor, key_hash: str, now_ms: int) -> bool:
    """The same conditions as the snapshot's `live_keys`, for one hash."""
    found = await db.fetch_val(
        "SELECT 1 FROM api_keys WHERE key_hash = $1 AND kind = 'buyer' AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > $2)",
        key_hash,
        now_ms,
    )
    return bool(found)
