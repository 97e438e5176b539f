"""Seed the ledger the way the data plane does: trades and their journals committed through the real
`SettlementWriter`, buyers funded by operator credits, buyer keys with budgets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from dragonfly.domain.ledger import Posting, trade_postings
from dragonfly.domain.money import TradeCost, trade_cost, worst_case_hold
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.ids import now_ms
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import api_keys
from dragonfly.storage.sql.repos.trades import TradeRow

PASSWORD = "correct horse battery"
FEE_BPS, RESERVE_BPS = 1000, 500
INPUT_PRICE, OUTPUT_PRICE = 1_000_000, 2_000_000  # $1 / $2 per 1M tokens


@dataclass
class Trade:
    row: TradeRow
    cost: TradeCost
    postings: list[Posting]


@dataclass
class Seeded:
    buyer: str
    seller: str
    key_id: str
    trades: list[Trade] = field(default_factory=list)


def make_trade(
    *,
    buyer: str,
    seller: str,
    key_id: str,
    at_ms: int,
    prompt: int = 1000,
    completion: int = 500,
    listing_id: str = "listing-a",
    model: str = "test/model-a",
    status: str = "completed",
) -> Trade:
    cost = trade_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=0,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
        cached_input_price=None,
        fee_bps=FEE_BPS,
        reserve_bps=RESERVE_BPS,
    )
    hold = worst_case_hold(
        prompt_tokens=prompt,
        max_completion_tokens=completion + 100,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
    )
    charged = cost.charge > 0
    row = TradeRow(
        id=str(uuid.uuid4()),
        buyer_account_id=buyer,
        key_id=key_id,
        model=model,
        upstream_model=model,
        listing_id=listing_id,
        seller_account_id=seller,
        provider="custom",
        streamed=0,
        status=status,
        finish_reason="stop",
        error_code=None,
        latency_ms=100,
        ttft_ms=50,
        tokens_prompt=prompt,
        tokens_completion=completion,
        tokens_cached=0,
        native_tokens_prompt=prompt,
        native_tokens_completion=completion,
        counted_tokens_completion=completion,
        usage_audit="ok",
        hold_micros=hold if charged else 0,
        cost_micros=cost.charge,
        seller_payout_micros=cost.payout + cost.reserve,
        platform_fee_micros=cost.fee + cost.rounding,
        attempts="[]",
        created_at=at_ms,
        settled_at=at_ms,
    )
    return Trade(row, cost, trade_postings(buyer, seller, cost))


async def write_trades(db: Database, trades: list[Trade]) -> None:
    writer = SettlementWriter(db)
    await writer.start()
    try:
        for t in trades:
            await writer.settle(t.row, t.postings)
    finally:
        await writer.close()


async def new_account(db: Database, label: str) -> str:
    return await create_account(
        db, email=f"{label}-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, verified=True, roles=[]
    )


async def new_buyer_key(db: Database, account_id: str, budget_cents: int | None = None) -> str:
    key_id = str(uuid.uuid4())
    async with db.transaction() as tx:
        await api_keys.insert(
            tx,
            key_id=key_id,
            account_id=account_id,
            kind="buyer",
            name="seeded",
            key_group="default",
            key_hash=uuid.uuid4().hex,
            key_hint="sk-df-…seed",
            mgmt_scope=None,
            monthly_budget_cents=budget_cents,
            routing_profile_id=None,
            ip_whitelist=[],
            ip_blacklist=[],
            expires_at=None,
            now=now_ms(),
        )
    return key_id


FUNDS_MICROS = 10_000_000  # what a seeded buyer is credited ($10)


async def funded_market(
    db: Database, *, seller: str | None = None, budget_cents: int | None = None
) -> tuple[str, str, str]:
    """A buyer credited with FUNDS_MICROS, a buyer key, and a seller: (buyer, seller, key_id)."""
    buyer = await new_account(db, "buyer")
    seller_id = seller or await new_account(db, "seller")
    key_id = await new_buyer_key(db, buyer, budget_cents=budget_cents)
    await credit_account(db, account_id=buyer, amount_micros=FUNDS_MICROS, note="seed")
    return buyer, seller_id, key_id


async def seed_market(db: Database, *, times_ms: list[int], seller: str | None = None) -> Seeded:
    """A funded buyer ($10) with a $5-budget key, a seller, and one trade at each time (listing a/b
    alternating), plus one failed zero-cost trade."""
    buyer, seller_id, key_id = await funded_market(db, seller=seller, budget_cents=500)
    out = Seeded(buyer=buyer, seller=seller_id, key_id=key_id)
    for i, at in enumerate(times_ms):
        listing, model = ("listing-a", "test/model-a") if i % 2 == 0 else ("listing-b", "test/model-b")
        out.trades.append(
            make_trade(
                buyer=buyer, seller=seller_id, key_id=key_id, at_ms=at, listing_id=listing, model=model
            )
        )
    if times_ms:
        out.trades.append(
            make_trade(
                buyer=buyer,
                seller=seller_id,
                key_id=key_id,
                at_ms=times_ms[0],
                prompt=0,
                completion=0,
                status="failed",
            )
        )
    await write_trades(db, out.trades)
    return out
