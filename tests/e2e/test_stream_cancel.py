"""A buyer who goes away mid-stream stops the seller at once and pays only for what was delivered."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import requests
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.domain.ledger import buyer_cash, seller_locked, seller_reserve
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger


async def _balances(url: str, buyer: str, seller: str) -> tuple[int, int]:
    db = await open_database(url)
    try:
        b = await ledger.balance(db, buyer_cash(buyer))
        s = await ledger.balance(db, seller_locked(seller)) + await ledger.balance(db, seller_reserve(seller))
        return b, s
    finally:
        await db.close()


def test_client_disconnect_cancels_upstream_and_bills_delivered_part(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller = demo_seller_factory()
    seller_id, _ = asyncio.run(seed_listing(settings, seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    seller.config.chunks = 200
    seller.config.chunk_delay_s = 0.05  # a 10 s answer
    before = asyncio.run(_balances(settings.database_url, buyer_id, seller_id))
    resp = requests.post(
        f"{origin}/v1/chat/completions",
        json={
            "model": "demo/echo-1",
            "messages": [{"role": "user", "content": "word"}],
            "stream": True,
            "max_tokens": 500,
        },
        headers={"Authorization": f"Bearer {key}"},
        stream=True,
        timeout=30,
    )
    request_id = resp.headers["x-request-id"]
    events = 0
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            events += 1
        if events >= 6:
            break
    resp.close()  # the buyer goes away
    closed_at = time.monotonic()
    while seller.stats.cancelled < 1 and time.monotonic() - closed_at < 5:
        time.sleep(0.02)
    assert seller.stats.cancelled == 1
    assert time.monotonic() - closed_at < 1.0, "the seller kept generating after the buyer left"
    receipt = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = requests.get(
            f"{origin}/v1/generation",
            params={"id": request_id},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if r.status_code == 200:
            receipt = r.json()["data"]
            break
        time.sleep(0.1)
    assert receipt is not None and receipt["status"] == "cancelled"
    # Billed on what was produced before the cut: a handful of words, not the 500-token hold.
    assert 0 < receipt["tokens_completion"] < 50
    after = asyncio.run(_balances(settings.database_url, buyer_id, seller_id))
    charged = before[0] - after[0]
    assert charged == int(Decimal(receipt["total_cost_usd"]) * 1_000_000) > 0
    assert after[1] - before[1] == int(Decimal(receipt["seller_payout_usd"]) * 1_000_000)
