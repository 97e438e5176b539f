"""The gateway on PostgreSQL loses its connection while a trade commits (a network reset between it and the
database; `support/tcp_cut.py` cuts it for real). The buyer, through the OpenAI SDK, gets the answer it paid
for when the trade turns out committed, and is never told "not charged" when that cannot be known."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI
from support.health_market import open_market, seed_two_sellers
from support.market import MODEL, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup
from support.tcp_cut import SETTLEMENT_STATEMENT as SETTLEMENT
from support.tcp_cut import CuttingProxy

from dragonfly.config import Settings
from dragonfly.domain.ledger import buyer_cash
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

pytestmark = pytest.mark.postgres

CREDIT_MICROS = 1_000_000
MESSAGES = [{"role": "user", "content": "one two three"}]


async def _books(db_url: str, buyer_id: str) -> tuple[list[object], list[dict], int]:
    db = await open_database(db_url)
    try:
        trades = await db.fetch_all(
            "SELECT id, status, cost_micros FROM trades WHERE buyer_account_id = $1 ORDER BY created_at",
            buyer_id,
        )
        return list(await check_ledger(db, None)), trades, await ledger.balance(db, buyer_cash(buyer_id))
    finally:
        await db.close()


async def _buyer_id(db_url: str, email: str = "buyer@e2e.test") -> str:
    db = await open_database(db_url)
    try:
        return str(await db.fetch_val("SELECT id FROM accounts WHERE email = $1", email))
    finally:
        await db.close()


def _serve_through(proxy: CuttingProxy, settings: Settings, processes: ProcessGroup) -> str:
    """`dragonfly serve` with every connection of its processes through the proxy (seeding did not)."""
    url = proxy.url_for(settings.database_url)
    return start_serve(processes, settings, extra_env={"DRAGONFLY_DATABASE_URL": url})


def _gateway(
    proxy: CuttingProxy, pg_database_url: str, tmp_path: Path, processes: ProcessGroup, seller_factory
) -> tuple[str, str, str]:
    settings = market_settings(pg_database_url, tmp_path / "data")
    asyncio.run(seed_listing(settings, seller_factory()))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    return _serve_through(proxy, settings, processes), buyer_id, key


def test_an_answer_whose_commit_reply_was_lost_is_delivered_and_charged_once(
    pg_cutting_proxy: CuttingProxy,
    pg_database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    origin, buyer_id, key = _gateway(
        pg_cutting_proxy, pg_database_url, tmp_path, processes, demo_seller_factory
    )
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)  # the settlement connection is open

    pg_cutting_proxy.arm(SETTLEMENT, deliver=True)  # PostgreSQL commits the trade; the gateway sees a reset
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert pg_cutting_proxy.cuts == 1
    answer = raw.parse()
    assert raw.headers["x-request-id"] and answer.choices[0].message.content

    settlement = requests.get(f"{origin}/healthz", timeout=10).json()["settlement"]
    assert (settlement["lost_in_commit"], settlement["unconfirmed"]) == (1, 0)
    violations, trades, balance = asyncio.run(_books(pg_database_url, buyer_id))
    assert violations == []
    assert [t["status"] for t in trades] == ["completed", "completed"]
    assert answer.id in {t["id"] for t in trades}
    assert all(t["cost_micros"] > 0 for t in trades)
    assert balance == CREDIT_MICROS - sum(t["cost_micros"] for t in trades)  # each charged once


def test_a_stream_whose_commit_reply_was_lost_ends_normally_and_is_charged_once(
    pg_cutting_proxy: CuttingProxy,
    pg_database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    """The same cut while a stream's trade commits, before its `[DONE]`: the stream ends as usual, with
    its usage chunk, and the trade is in the books once."""
    origin, buyer_id, key = _gateway(
        pg_cutting_proxy, pg_database_url, tmp_path, processes, demo_seller_factory
    )
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    pg_cutting_proxy.arm(SETTLEMENT, deliver=True)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert pg_cutting_proxy.cuts == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    violations, trades, balance = asyncio.run(_books(pg_database_url, buyer_id))
    assert violations == []
    assert [t["status"] for t in trades] == ["completed", "completed"]
    assert chunks[-1].id in {t["id"] for t in trades}
    assert balance == CREDIT_MICROS - sum(t["cost_micros"] for t in trades)


def test_a_stream_whose_commit_cannot_be_confirmed_ends_with_an_error_event(
    pg_cutting_proxy: CuttingProxy,
    pg_database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    """The same cut with the database then unreachable, on a stream: its text has gone out, but its end
    is an error chunk that says the outcome is unknown (the SDK raises on it), never a clean `[DONE]`."""
    origin, _, key = _gateway(pg_cutting_proxy, pg_database_url, tmp_path, processes, demo_seller_factory)
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    pg_cutting_proxy.arm(SETTLEMENT, deliver=True, grace_s=0.3)
    pg_cutting_proxy.refuse = True
    chunks = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ):
            chunks.append(chunk)
    pg_cutting_proxy.refuse = False
    assert pg_cutting_proxy.cuts == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None  # what finish() held back still went out, before the error
    assert f"/v1/generation?id={chunks[0].id}" in raised.value.message
    assert "not charged" not in raised.value.message


def test_an_unconfirmable_commit_is_reported_as_unknown_and_the_receipt_tells(
    pg_cutting_proxy: CuttingProxy,
    pg_database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    """Lost mid-commit, then the database unreachable for the writer's whole resolve window (~5 s): 503
    `service_unavailable` that says the outcome is not known and where to look, with `x-should-retry:
    false` (the SDK must not pay twice by itself); the receipt shows it was charged."""
    origin, buyer_id, key = _gateway(
        pg_cutting_proxy, pg_database_url, tmp_path, processes, demo_seller_factory
    )
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": MODEL, "messages": MESSAGES}
    assert requests.post(f"{origin}/v1/chat/completions", json=body, headers=headers, timeout=30).ok

    pg_cutting_proxy.arm(SETTLEMENT, deliver=True, grace_s=0.3)
    pg_cutting_proxy.refuse = True
    r = requests.post(f"{origin}/v1/chat/completions", json=body, headers=headers, timeout=30)
    pg_cutting_proxy.refuse = False
    assert pg_cutting_proxy.cuts == 1
    assert r.status_code == 503, r.text
    assert r.headers["x-should-retry"] == "false" and r.headers["x-request-id"]
    error = r.json()["error"]
    assert error["code"] == "service_unavailable"
    assert "not charged" not in error["message"]
    trade_id = r.headers["x-request-id"]
    assert f"/v1/generation?id={trade_id}" in error["message"]

    settlement = requests.get(f"{origin}/healthz", timeout=10).json()["settlement"]
    assert (settlement["lost_in_commit"], settlement["unconfirmed"]) == (1, 1)
    receipt = requests.get(f"{origin}/v1/generation", params={"id": trade_id}, headers=headers, timeout=30)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["data"]["id"] == trade_id
    violations, trades, balance = asyncio.run(_books(pg_database_url, buyer_id))
    assert violations == []
    assert {t["id"]: t["status"] for t in trades}[trade_id] == "completed"  # it had committed
    assert balance == CREDIT_MICROS - sum(t["cost_micros"] for t in trades)


def test_a_continued_streams_part_whose_commit_cannot_be_confirmed_is_not_billed_twice(
    pg_cutting_proxy: CuttingProxy,
    pg_database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    """CHEAP dies mid-stream; the part it produced is billed as a trade of its own before the stream is
    continued at PRICEY — and that commit's answer is lost with the database then unreachable. Recorded
    or not, nobody can tell: the stream is not continued (more would be sold on a record not known), it
    ends with an error chunk naming the part's receipt (never "not charged"), and the request's own trade
    bills nothing for CHEAP's tokens, so a part that did commit is the only charge for them."""
    settings = market_settings(pg_database_url, tmp_path / "data")
    cheap, pricey = demo_seller_factory(), demo_seller_factory()
    ids = seed_two_sellers(settings, cheap, pricey)
    origin = _serve_through(pg_cutting_proxy, settings, processes)
    m = open_market(origin, settings, None, cheap, ids)
    client = OpenAI(base_url=f"{origin}/v1", api_key=m.cost_first_key, max_retries=0, timeout=30)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)  # the settlement connection is open

    cheap.config.drop_mid_stream_after = 3  # role preamble, "Echo: ", "one ", then CHEAP's connection closes
    pg_cutting_proxy.arm(SETTLEMENT, deliver=True, grace_s=0.3)  # the part commits; its answer is lost
    pg_cutting_proxy.refuse = True
    chunks = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            chunks.append(chunk)
    pg_cutting_proxy.refuse = False
    assert pg_cutting_proxy.cuts == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: ") and text != "Echo: one two three"  # CHEAP's words, not continued
    message = raised.value.message
    assert "/v1/generation?id=" in message and "not charged" not in message

    part_id = message.split("/v1/generation?id=")[1].split()[0]
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": part_id},
        headers={"Authorization": f"Bearer {m.cost_first_key}"},
        timeout=30,
    )
    assert receipt.status_code == 200, receipt.text  # it had committed: the receipt says so
    part = receipt.json()["data"]
    assert part["status"] == "continued" and part["listing_id"] == m.cheap
    assert part["tokens_completion"] > 0 and Decimal(part["total_cost_usd"]) > 0

    settlement = requests.get(f"{origin}/healthz", timeout=10).json()["settlement"]
    assert (settlement["lost_in_commit"], settlement["unconfirmed"]) == (1, 1)
    buyer_id = asyncio.run(_buyer_id(pg_database_url))
    violations, trades, balance = asyncio.run(_books(pg_database_url, buyer_id))
    assert violations == []
    by_id = {t["id"]: t for t in trades}
    assert chunks[0].id not in by_id or by_id[chunks[0].id]["cost_micros"] == 0  # never CHEAP's tokens again
    assert balance == 5_000_000 - sum(t["cost_micros"] for t in trades)
