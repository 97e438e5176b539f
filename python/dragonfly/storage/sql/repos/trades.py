"""Trades: one row per request id, written once at settlement together with its journal."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from dragonfly.storage.ports import Executor, Row


@dataclass(frozen=True, slots=True)
class TradeRow:
    id: str
    buyer_account_id: str
    key_id: str
    model: str
    upstream_model: str | None
    listing_id: str | None
    seller_account_id: str | None
    provider: str | None
    streamed: int
    status: str  # completed | failed | cancelled | refused
    finish_reason: str | None
    error_code: str | None
    latency_ms: int | None
    ttft_ms: int | None
    tokens_prompt: int
    tokens_completion: int
    tokens_cached: int
    native_tokens_prompt: int | None
    native_tokens_completion: int | None
    counted_tokens_completion: int | None
    usage_audit: str
    hold_micros: int
    cost_micros: int
    seller_payout_micros: int
    platform_fee_micros: int
    attempts: str  # JSON text
    created_at: int
    settled_at: int


_COLUMNS = ", ".join(TradeRow.__dataclass_fields__)
# A flat tuple of the fields in column order (dataclasses.astuple deep-copies and costs ~35 µs here).
as_params = attrgetter(*TradeRow.__dataclass_fields__)
_PLACEHOLDERS = ", ".join(f"${i + 1}" for i in range(len(TradeRow.__dataclass_fields__)))
INSERT_TRADE = f"INSERT INTO trades ({_COLUMNS}) VALUES ({_PLACEHOLDERS}) ON CONFLICT (id) DO NOTHING"


async def insert(tx: Executor, trade: TradeRow) -> bool:
    """Insert once; a replay of the same request id changes nothing and returns False."""
    n = await tx.execute(INSERT_TRADE, *as_params(trade))
    return n > 0


async def get_for_buyer(db: Executor, trade_id: str, buyer_account_id: str) -> Row | None:
    return await db.fetch_one(
        "SELECT * FROM trades WHERE id = $1 AND buyer_account_id = $2", trade_id, buyer_account_id
    )
