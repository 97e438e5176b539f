"""Routing under failure and limits: fallback bills only the listing that answered, listing rpm caps
answer 429 with pacing headers, and a revoked key stops working within 2 s."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import requests
from support.market import SECRET, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.domain.ledger import buyer_cash
from dragonfly.security.api_keys import KeyHasher
from dragonfly.services.keys import create_buyer_key, revoke_key
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

MESSAGES = [{"role": "user", "content": "Hello"}]


def _post(origin: str, key: str) -> requests.Response:
    return requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


async def _balance(url: str, account: str) -> int:
    db = await open_database(url)
    try:
        return await ledger.balance(db, buyer_cash(account))
    finally:
        await db.close()


def test_fallback_bills_only_the_listing_that_answered(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    cheap, sound = demo_seller_factory(), demo_seller_factory()
    _, cheap_listing = asyncio.run(
        seed_listing(settings, cheap, seller_email="cheap@e2e.test", input_price="0.01", output_price="0.01")
    )
    _, sound_listing = asyncio.run(
        seed_listing(settings, sound, seller_email="sound@e2e.test", input_price="5.00", output_price="5.00")
    )
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    cheap.config.fail_status = 503  # the cheapest seller breaks after admission
    before = asyncio.run(_balance(settings.database_url, buyer_id))
    r = _post(origin, key)
    assert r.status_code == 200, r.text
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": r.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["listing_id"] == sound_listing
    assert [a["listing_id"] for a in receipt["attempts"]] == [cheap_listing, sound_listing]
    assert receipt["attempts"][0]["error_type"] == "http_503" and receipt["attempts"][1]["status"] == "ok"
    charged = before - asyncio.run(_balance(settings.database_url, buyer_id))
    assert charged == int(Decimal(receipt["total_cost_usd"]) * 1_000_000) > 0
    assert sound.stats.requests >= 1


def test_listing_rpm_cap_is_429_with_pacing_headers(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    asyncio.run(seed_listing(settings, demo_seller_factory(), rpm_cap=2))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    assert [_post(origin, key).status_code for _ in range(2)] == [200, 200]
    limited = _post(origin, key)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    assert limited.headers["x-ratelimit-limit-requests"] == "2"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-request-id"]


def test_revoked_key_is_refused_within_two_seconds(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    asyncio.run(seed_listing(settings, demo_seller_factory()))
    buyer_id, _ = asyncio.run(seed_buyer(settings, credit_cents=100))

    async def new_key() -> dict:
        db = await open_database(settings.database_url)
        try:
            return await create_buyer_key(db, KeyHasher(SECRET), account_id=buyer_id, name="short-lived")
        finally:
            await db.close()

    async def revoke(key_id: str) -> None:
        db = await open_database(settings.database_url)
        try:
            await revoke_key(db, account_id=buyer_id, key_id=key_id, kind="buyer")
        finally:
            await db.close()

    created = asyncio.run(new_key())
    origin = start_serve(processes, settings)
    assert _post(origin, created["key"]).status_code == 200
    asyncio.run(revoke(created["id"]))
    revoked_at = time.monotonic()
    while _post(origin, created["key"]).status_code == 200:
        assert time.monotonic() - revoked_at < 2.0, "revocation did not reach the data plane within 2 s"
        time.sleep(0.05)
    r = _post(origin, created["key"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
