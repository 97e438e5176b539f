"""Read-only usage reports over a buyer's own trades (the control plane's /api/usage*)."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

DAY_MS = 86_400_000
_SUMS = (
    "COUNT(*) AS requests, COALESCE(SUM(tokens_prompt), 0) AS prompt_tokens,"
    " COALESCE(SUM(tokens_completion), 0) AS completion_tokens, COALESCE(SUM(cost_micros), 0) AS cost_micros"
)


async def totals(db: Executor, *, account_id: str, start_ms: int, end_ms: int) -> Row:
    row = await db.fetch_one(
        f"SELECT {_SUMS} FROM trades WHERE buyer_account_id = $1 AND created_at >= $2 AND created_at < $3",
        account_id,
        start_ms,
        end_ms,
    )
    return row or {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_micros": 0}


_BUYER_WINDOW = (
    " FROM trades t LEFT JOIN api_keys k ON k.id = t.key_id"
    " WHERE t.buyer_account_id = $1 AND t.created_at >= $2 AND t.created_at < $3"
)


async def by_key(
    db: Executor, *, account_id: str, start_ms: int, end_ms: int, group: str | None = None
) -> list[Row]:
    """Per key; with `group`, only the keys of that `key_group`."""
    where, args = _BUYER_WINDOW, [account_id, start_ms, end_ms]
    if group is not None:
        where += " AND k.key_group = $4"
        args.append(group)
    return await db.fetch_all(
        f"SELECT t.key_id, k.name AS key_name, k.key_group, {_SUMS}{where}"
        " GROUP BY t.key_id, k.name, k.key_group ORDER BY t.key_id",
        *args,
    )


async def by_group(db: Executor, *, account_id: str, start_ms: int, end_ms: int) -> list[Row]:
    """Per `key_group` of the trades' keys, with how many keys had trades; a trade whose key row is gone
    (never, through the API: keys are revoked, not deleted) counts under a NULL group, listed last."""
    return await db.fetch_all(
        f"SELECT k.key_group, COUNT(DISTINCT t.key_id) AS keys, {_SUMS}{_BUYER_WINDOW}"
        " GROUP BY k.key_group ORDER BY k.key_group IS NULL, k.key_group",
        account_id,
        start_ms,
        end_ms,
    )


async def daily(db: Executor, *, account_id: str, start_ms: int) -> list[Row]:
    """Per UTC day (as the day number since the epoch) and model."""
    return await db.fetch_all(
        f"SELECT created_at / {DAY_MS} AS day, model, {_SUMS} FROM trades"
        " WHERE buyer_account_id = $1 AND created_at >= $2"
        f" GROUP BY created_at / {DAY_MS}, model ORDER BY day, model",
        account_id,
        start_ms,
    )
