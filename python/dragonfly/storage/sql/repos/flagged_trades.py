"""Trades whose usage audit is `flagged` (seller-reported completion tokens above the local count), newest
first. Trade ids are UUIDv7 made when the request arrives, so id order is arrival order and the id is the
page cursor (the partial index `trades_flagged` holds only flagged trades)."""

from __future__ import annotations

from dragonfly.storage.ports import Executor, Row

_COLUMNS = (
    "id, created_at, model, upstream_model, listing_id, seller_account_id, provider, buyer_account_id,"
    " key_id, status, streamed, tokens_prompt, tokens_completion, tokens_cached, native_tokens_prompt,"
    " native_tokens_completion, counted_tokens_completion, usage_audit, cost_micros, seller_payout_micros,"
    " platform_fee_micros"
)


async def page(db: Executor, *, before_id: str | None, limit: int) -> list[Row]:
    if before_id is None:
        return await db.fetch_all(
            f"SELECT {_COLUMNS} FROM trades WHERE usage_audit = 'flagged' ORDER BY id DESC LIMIT $1", limit
        )
    return await db.fetch_all(
        f"SELECT {_COLUMNS} FROM trades WHERE usage_audit = 'flagged' AND id < $1 ORDER BY id DESC LIMIT $2",
        before_id,
        limit,
    )
