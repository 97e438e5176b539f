"""Trades: one row per request id, written once at settlement together with its journal."""

from __future__ import annotations

from operator import attrgetter

from dragonfly.domain.trade_record import TradeRecord
from dragonfly.storage.ports import Executor, Row

# The record is the domain's (what a trade is); this module only knows how it is stored.
TradeRow = TradeRecord

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
