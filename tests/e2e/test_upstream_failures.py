"""When sellers fail, the buyer gets the documented error and pays nothing."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import requests
from support.market import login, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.ledger import buyer_cash
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

MESSAGES = [{"role": "user", "content": "Hello"}]


async def _buyer_balance(url: str, buyer_id: str) -> int:
    db = await open_database(url)
    try:
        return await ledger.balance(db, buyer_cash(buyer_id))
    finally:
        await db.close()


def test_dead_listing_gives_502_and_no_charge(
    database_url: str, tmp_path: Path, processes: ProcessGroup
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller = DemoSeller()
    with seller.run_in_thread():
        asyncio.run(seed_listing(settings, seller))  # probed while alive: the listing is active
    # The seller is gone now: its port is dead.
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    before = asyncio.run(_buyer_balance(settings.database_url, buyer_id))
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_error"
    request_id = r.headers["x-request-id"]
    assert asyncio.run(_buyer_balance(settings.database_url, buyer_id)) == before
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["status"] == "failed" and receipt["total_cost_usd"] == "0.000000"
    assert receipt["attempts"] and receipt["attempts"][0]["error_type"] == "connect_error"


def test_seller_error_status_is_upstream_error(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    healthy = demo_seller_factory()
    asyncio.run(seed_listing(settings, healthy))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    healthy.config.fail_status = 503  # the seller starts failing after admission
    time.sleep(0.1)
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    assert asyncio.run(_buyer_balance(settings.database_url, buyer_id)) == 1_000_000


def test_slow_seller_is_upstream_timeout_and_no_charge(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller = demo_seller_factory()
    asyncio.run(seed_listing(settings, seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings, read_timeout_s=1)
    seller.config.first_token_delay_s = 3.0  # slower than the gateway's read timeout
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert r.headers["x-request-id"]
    assert asyncio.run(_buyer_balance(settings.database_url, buyer_id)) == 1_000_000


def test_a_seller_refusing_its_own_credentials_falls_back_to_another(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    # The cheap seller's provider key is revoked after admission (it answers 401): that is the seller's
    # fault, not the buyer's, so the request goes to the next listing and only that one is billed.
    settings = market_settings(database_url, tmp_path / "data")
    revoked, healthy = demo_seller_factory(), demo_seller_factory()
    _, cheap_id = asyncio.run(seed_listing(settings, revoked, input_price="0.10", output_price="0.10"))
    _, good_id = asyncio.run(seed_listing(settings, healthy, seller_email="healthy@e2e.test"))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    revoked.config.fail_status = 401
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": r.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["listing_id"] == good_id
    assert [(a["listing_id"], a.get("error_type")) for a in receipt["attempts"]] == [
        (cheap_id, "http_401"),
        (good_id, None),
    ]


def test_a_body_broken_after_its_head_falls_back_and_is_billed_once(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    # Honest at admission; afterwards the cheap seller answers 200 and breaks its body off. Nothing has
    # reached the buyer yet: the attempt failed (health hears of it, its hold is voided) and the next
    # listing answers, billed once.
    settings = market_settings(database_url, tmp_path / "data")
    broken, healthy = demo_seller_factory(), demo_seller_factory()
    _, cheap_id = asyncio.run(seed_listing(settings, broken, input_price="0.10", output_price="0.10"))
    _, good_id = asyncio.run(seed_listing(settings, healthy, seller_email="healthy@e2e.test"))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    broken.config.break_body_after_bytes = 20
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: Hello"
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": r.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["status"] == "completed" and receipt["listing_id"] == good_id
    assert [(a["listing_id"], a["status"], a.get("error_type")) for a in receipt["attempts"]] == [
        (cheap_id, "error", "broken_body"),
        (good_id, "ok", None),
    ]
    # Billed once, by the listing that answered; the broken attempt's hold was voided.
    charged = 1_000_000 - asyncio.run(_buyer_balance(settings.database_url, buyer_id))
    assert charged == int(Decimal(receipt["total_cost_usd"]) * 1_000_000) > 0
    balance = requests.get(f"{origin}/api/billing/balance", headers=login(origin), timeout=10).json()
    assert Decimal(balance["held_usd"]) == 0, balance
