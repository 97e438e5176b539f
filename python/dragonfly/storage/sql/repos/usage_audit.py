"""What the live usage audit (workers/usage_audit.py) reads and writes: the trades it feeds the detector,
its lease, and its alarms with the block of trades each one flags."""

from __future__ import annotations

from collections.abc import Sequence

from dragonfly.domain.usage_audit import Alarm
from dragonfly.storage.ports import Dialect, Executor, Row
from dragonfly.storage.sql.repos.earnings import lock_seller

# Trades billed per token with a seller: the reported (native) and counted tokens of each kind.
_AUDITED = (
    " FROM trades WHERE settled_at >= $1 AND seller_account_id IS NOT NULL"
    " AND (price_unit IS NULL OR price_unit = 'token')"
)
_TRADES = (
    "SELECT id, settled_at, model, seller_account_id, native_tokens_prompt, counted_tokens_prompt,"
    " native_tokens_completion, counted_tokens_completion" + _AUDITED
)


async def claim_lease(db: Executor, *, name: str, owner: str, now: int, until: int) -> bool:
    """Take or extend the named lease (True) when it is ours or has lapsed."""
    n = await db.execute(
        "UPDATE worker_leases SET owner = $2, until = $3 WHERE name = $1 AND (owner = $2 OR until < $4)",
        name,
        owner,
        until,
        now,
    )
    return n == 1


async def release_lease(db: Executor, *, name: str, owner: str) -> None:
    await db.execute("UPDATE worker_leases SET until = 0 WHERE name = $1 AND owner = $2", name, owner)


async def settled_since(db: Executor, since: int) -> list[Row]:
    """Every trade that ended at or after `since` (ms), in the order they ended."""
    return await db.fetch_all(_TRADES + " ORDER BY settled_at, id", since)


async def count_settled_between(db: Executor, since: int, until: int) -> int:
    """How many of those trades ended at or after `since` and before `until` (ms)."""
    return int(await db.fetch_val("SELECT COUNT(*)" + _AUDITED + " AND settled_at < $2", since, until))


async def latest(db: Executor, since: int, limit: int) -> list[Row]:
    """The newest `limit` trades that ended at or after `since`, in the order they ended."""
    rows = await db.fetch_all(_TRADES + " ORDER BY settled_at DESC, id DESC LIMIT $2", since, limit)
    rows.reverse()
    return rows


async def record_alarm(
    tx: Executor, dialect: Dialect, alarm: Alarm, *, alarm_id: str, now: int, not_before: int
) -> int:
    """Store the alarm and flag its block's trades that are not flagged yet and ended at or after
    `not_before` (older ones may have had their seller's share released already: holding it now would
    hold money the seller no longer has). Under the seller's earnings lock, so no release runs between.
    The number of trades flagged."""
    await lock_seller(tx, dialect, alarm.seller)
    ids: Sequence[str] = [i for i in alarm.trade_ids if i]
    flagged = 0
    if ids:
        marks = ", ".join(f"${n}" for n in range(4, 4 + len(ids)))
        flagged = await tx.execute(
            "UPDATE trades SET usage_audit = 'flagged', audit_alarm_id = $1"
            " WHERE usage_audit <> 'flagged' AND seller_account_id = $2 AND settled_at >= $3"
            f" AND id IN ({marks})",
            alarm_id,
            alarm.seller,
            not_before,
            *ids,
        )
    await tx.execute(
        "INSERT INTO usage_alarms (id, created_at, seller_account_id, model, kind, statistic, ratio,"
        " reference, trades, flagged) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        alarm_id,
        now,
        alarm.seller,
        alarm.model,
        alarm.kind,
        alarm.statistic,
        alarm.ratio,
        alarm.reference,
        alarm.trades,
        flagged,
    )
    return flagged


async def alarms(db: Executor, *, seller_id: str | None, limit: int) -> list[Row]:
    """The newest alarms, every seller's or one seller's."""
    if seller_id is None:
        return await db.fetch_all(
            "SELECT * FROM usage_alarms ORDER BY created_at DESC, id DESC LIMIT $1", limit
        )
    return await db.fetch_all(
        "SELECT * FROM usage_alarms WHERE seller_account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        seller_id,
        limit,
    )
