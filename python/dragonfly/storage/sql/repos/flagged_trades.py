"""Trades whose usage audit is `flagged` (seller-reported usage above the local count, or a block of trades
the market-relative audit raised an alarm on: its `usage_alarms` row), each with its review (a
`trade_reviews` row once resolved, none while open), newest first. Trade ids are UUIDv7 made when the
request arrives, so id order is arrival order and the id is the page cursor (the partial indexes
`trades_flagged` and `trades_flagged_seller` hold only flagged trades)."""

from __future__ import annotations

from dragonfly.domain.ledger import (
    PLATFORM_FEES,
    PLATFORM_ROUNDING,
    buyer_cash,
    seller_locked,
    seller_reserve,
)
from dragonfly.storage.ports import Executor, Row

# The trade, what a review needs to price its excess (prices as billed; the listing's current ones for a
# trade settled before they were recorded), and its resolution if any.
_COLUMNS = (
    "t.id, t.created_at, t.model, t.upstream_model, t.listing_id, t.seller_account_id, t.provider,"
    " t.buyer_account_id, t.key_id, t.status, t.streamed, t.tokens_prompt, t.tokens_completion,"
    " t.tokens_cached, t.native_tokens_prompt, t.native_tokens_completion, t.counted_tokens_prompt,"
    " t.counted_tokens_completion, t.usage_audit, t.cost_micros, t.seller_payout_micros,"
    " t.platform_fee_micros, t.price_unit, t.characters_prompt,"
    " COALESCE(t.input_price, l.input_price, 0) AS input_price,"
    " COALESCE(t.output_price, l.output_price, 0) AS output_price,"
    " CASE WHEN t.input_price IS NULL THEN l.cached_input_price ELSE t.cached_input_price END"
    " AS cached_input_price,"
    " r.state AS review_state, r.excess_micros AS review_excess_micros,"
    " r.refund_micros AS review_refund_micros, r.note AS review_note, r.resolved_by AS review_resolved_by,"
    " r.resolved_at AS review_resolved_at,"
    " a.id AS alarm_id, a.created_at AS alarm_created_at, a.kind AS alarm_kind, a.ratio AS alarm_ratio,"
    " a.reference AS alarm_reference, a.statistic AS alarm_statistic, a.trades AS alarm_trades"
)
_FROM = (
    "FROM trades t LEFT JOIN listings l ON l.id = t.listing_id LEFT JOIN trade_reviews r ON r.trade_id = t.id"
    " LEFT JOIN usage_alarms a ON a.id = t.audit_alarm_id"
)


async def page(
    db: Executor,
    *,
    before_id: str | None,
    limit: int,
    seller_account_id: str | None = None,
    state: str | None = None,
) -> list[Row]:
    """One page, newest first: every seller's flagged trades, or one seller's (`seller_account_id`);
    only reviews in `state` (open | upheld | dismissed) when given."""
    where, args = ["t.usage_audit = 'flagged'"], []
    if seller_account_id is not None:
        args.append(seller_account_id)
        where.append(f"t.seller_account_id = ${len(args)}")
    if before_id is not None:
        args.append(before_id)
        where.append(f"t.id < ${len(args)}")
    if state == "open":
        where.append("r.trade_id IS NULL")
    elif state is not None:
        args.append(state)
        where.append(f"r.state = ${len(args)}")
    return await db.fetch_all(
        f"SELECT {_COLUMNS} {_FROM} WHERE {' AND '.join(where)} ORDER BY t.id DESC LIMIT ${len(args) + 1}",
        *args,
        limit,
    )


async def get(db: Executor, trade_id: str) -> Row | None:
    """One flagged trade with its review, or None (no such trade, or not flagged)."""
    return await db.fetch_one(
        f"SELECT {_COLUMNS} {_FROM} WHERE t.id = $1 AND t.usage_audit = 'flagged'", trade_id
    )


async def trade_split(tx: Executor, trade_id: str, buyer_id: str, seller_id: str) -> dict[str, int]:
    """The trade journal's lines by role: `charge` (the buyer's debit, positive), `payout` (seller locked),
    `reserve` (seller reserve), `fee` (platform fees), `rounding` (platform rounding)."""
    rows = await tx.fetch_all(
        "SELECT e.account, SUM(e.amount) AS amount FROM journals j JOIN entries e ON e.journal_id = j.id"
        " WHERE j.kind = 'trade' AND j.ref = $1 GROUP BY e.account",
        trade_id,
    )
    lines = {str(r["account"]): int(r["amount"]) for r in rows}
    return {
        "charge": -lines.get(buyer_cash(buyer_id), 0),
        "payout": lines.get(seller_locked(seller_id), 0),
        "reserve": lines.get(seller_reserve(seller_id), 0),
        "fee": lines.get(PLATFORM_FEES, 0),
        "rounding": lines.get(PLATFORM_ROUNDING, 0),
    }


async def insert_review(
    tx: Executor,
    *,
    trade_id: str,
    seller_account_id: str,
    buyer_account_id: str,
    state: str,
    excess_micros: int,
    refund_micros: int,
    note: str | None,
    resolved_by: str,
    resolved_at: int,
) -> bool:
    """Record a resolution; False when the review was already resolved (the primary key is the trade)."""
    n = await tx.execute(
        "INSERT INTO trade_reviews (trade_id, seller_account_id, buyer_account_id, state, excess_micros,"
        " refund_micros, note, resolved_by, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (trade_id) DO NOTHING",
        trade_id,
        seller_account_id,
        buyer_account_id,
        state,
        excess_micros,
        refund_micros,
        note,
        resolved_by,
        resolved_at,
    )
    return n > 0
