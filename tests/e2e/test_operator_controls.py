"""Operator controls through a running `dragonfly serve` (both storage backends) with a real fake seller:
a suspended listing is unroutable on the very next request and comes back only when its probe passes;
trades whose seller over-reports usage show up in the operator's flagged list."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests
from support.market import Market

from dragonfly.demo.seller import DemoSeller
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database

OPS_EMAIL = "ops@e2e.test"
OPS_PASSWORD = "operator-password-1"


def _operator(market: Market) -> dict[str, str]:
    """An operator account (as `dragonfly admin create-operator` makes it), logged in through the public
    port: the Authorization header for /api/admin/*."""

    async def create() -> None:
        db = await open_database(market.settings.database_url)
        try:
            await create_account(
                db, email=OPS_EMAIL, password=OPS_PASSWORD, verified=True, roles=["operator"]
            )
        finally:
            await db.close()

    asyncio.run(create())
    r = requests.post(
        f"{market.origin}/api/auth/login", json={"email": OPS_EMAIL, "password": OPS_PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _chat(market: Market, content: str = "Hello there", stream: bool = False) -> requests.Response:
    body: dict[str, Any] = {"model": "demo/echo-1", "messages": [{"role": "user", "content": content}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    r = requests.post(
        f"{market.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=30,
    )
    _ = r.content  # read a stream to its end
    return r


def _admin(market: Market, ops: dict[str, str], method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{market.origin}{path}", headers=ops, timeout=60, **kw)


def test_suspended_listing_is_unroutable_at_once_and_returns_only_when_healthy(
    market: Market, demo_seller: DemoSeller
) -> None:
    ops = _operator(market)
    assert _chat(market).status_code == 200

    suspend = f"/api/admin/listings/{market.listing_id}/suspend"
    r = _admin(market, ops, "POST", suspend, json={"reason": "abuse report"})
    assert r.status_code == 200, r.text
    assert r.json()["listing"]["status"] == "suspended"
    # The very next request: the model has no routable listing left.
    refused = _chat(market)
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "model_not_found"
    assert demo_seller.stats.snapshot()["requests"] == 1 + 2  # the first request and the seeding probe

    # The seller is failing: the probe fails and the listing stays suspended (and unroutable).
    demo_seller.config.fail_status = 500
    unsuspend = f"/api/admin/listings/{market.listing_id}/unsuspend"
    r = _admin(market, ops, "POST", unsuspend)
    assert r.status_code == 200, r.text
    assert r.json()["unsuspended"] is False
    assert r.json()["reason"] == "chat_completion: unexpected HTTP 500"
    assert r.json()["probe_run"]["passed"] is False
    demo_seller.config.fail_status = None
    assert _chat(market).status_code == 404

    # Healthy again: the probe passes and the very next request is served.
    r = _admin(market, ops, "POST", unsuspend)
    assert r.status_code == 200, r.text
    assert r.json()["unsuspended"] is True and r.json()["listing"]["status"] == "active"
    ok = _chat(market)
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"] == "Echo: Hello there"


def _receipt(market: Market, trade_id: str) -> dict[str, Any]:
    r = requests.get(
        f"{market.base_url}/generation",
        params={"id": trade_id},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def test_inflated_usage_lands_in_the_flagged_trades(market: Market, demo_seller: DemoSeller) -> None:
    ops = _operator(market)
    honest = _chat(market)
    assert honest.status_code == 200
    # After admission the seller starts reporting 20x the tokens it produced.
    demo_seller.config.usage_multiplier = 20
    inflated = [_chat(market, "one two three"), _chat(market, "four five", stream=True), _chat(market, "six")]
    assert all(r.status_code == 200 for r in inflated)
    ids = [r.headers["x-request-id"] for r in inflated]
    assert _receipt(market, honest.headers["x-request-id"])["usage_audit"] == "ok"

    first = _admin(market, ops, "GET", "/api/admin/flagged-trades?limit=2")
    assert first.status_code == 200, first.text
    page = first.json()
    assert [t["id"] for t in page["data"]] == [ids[2], ids[1]]  # newest first
    assert page["has_more"] is True and page["next_cursor"] == ids[1]
    second = _admin(market, ops, "GET", f"/api/admin/flagged-trades?limit=2&cursor={page['next_cursor']}")
    assert second.json() == {
        "data": [second.json()["data"][0]],
        "has_more": False,
        "next_cursor": None,
    }
    assert second.json()["data"][0]["id"] == ids[0]

    for trade in page["data"] + second.json()["data"]:
        receipt = _receipt(market, trade["id"])
        assert trade["usage_audit"] == receipt["usage_audit"] == "flagged"
        assert trade["model"] == "demo/echo-1" and trade["listing_id"] == market.listing_id
        assert trade["seller_id"] == market.seller_id and trade["buyer_id"] == market.buyer_id
        assert trade["created_at"] == receipt["created_at"]
        reported, counted = trade["native_tokens_completion"], trade["counted_tokens_completion"]
        assert (
            reported == receipt["native_tokens_completion"]
            and counted == receipt["counted_tokens_completion"]
        )
        assert reported > counted * 1.5 + 16 and trade["excess_tokens_completion"] == reported - counted
        assert trade["tokens_completion"] == receipt["tokens_completion"]
        assert trade["total_cost_usd"] == receipt["total_cost_usd"] != "0.000000"
        assert trade["seller_payout_usd"] == receipt["seller_payout_usd"]
        assert trade["platform_fee_usd"] == receipt["platform_fee_usd"]
    assert page["data"][1]["streamed"] is True and page["data"][0]["streamed"] is False

    bad = _admin(market, ops, "GET", "/api/admin/flagged-trades?cursor=not-a-trade")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"
    # Buyers do not see the operator's list.
    buyer = requests.get(
        f"{market.origin}/api/admin/flagged-trades",
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=10,
    )
    assert buyer.status_code == 401 and buyer.json()["error"]["code"] == "invalid_api_key"


def test_routing_activity_shows_the_decisions_of_real_requests(market: Market) -> None:
    ops = _operator(market)
    ok = _chat(market)
    assert ok.status_code == 200
    refused = requests.post(
        f"{market.base_url}/chat/completions",
        json={"model": "demo/echo-1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=30,
    )
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # written by the data plane in the background
        r = _admin(market, ops, "GET", "/api/admin/routing/activity", params={"model": "demo/echo-1"})
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        if rows:
            break
        time.sleep(0.2)
    first = rows[-1]  # the first decision after start is always kept
    assert first["trade_id"] == ok.headers["x-request-id"]
    assert first["outcome"] == "completed" and first["chosen_listing_id"] == market.listing_id
    assert first["profile_id"] and first["strategy"] == "balanced"  # the account's default profile
    chosen = [c for c in first["candidates"] if c["chosen"]]
    assert [c["listing_id"] for c in chosen] == [market.listing_id]
    assert set(chosen[0]["weights"]) == {"price", "latency", "throughput", "reliability", "quality"}
    # Sampled: the second decision within the same second is not kept.
    assert all(row["trade_id"] != refused.headers["x-request-id"] for row in rows)
    buyer = {"Authorization": f"Bearer {market.buyer_key}"}
    assert _admin(market, buyer, "GET", "/api/admin/routing/activity").status_code == 401
