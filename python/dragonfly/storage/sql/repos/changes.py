"""The change sequence: bumped in the same transaction as any write that an in-memory snapshot
(keys, profiles, listings, pool keys) depends on; every data-plane instance polls it."""

from __future__ import annotations

from dragonfly.storage.ports import Executor


async def bump(tx: Executor) -> None:
    await tx.execute("UPDATE change_seq SET seq = seq + 1 WHERE id = 1")


async def current(db: Executor) -> int:
    return int(await db.fetch_val("SELECT seq FROM change_seq WHERE id = 1") or 0)
