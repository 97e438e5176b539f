"""Market pricing through a running `dragonfly serve` (both storage backends) with a real fake seller: a
payout floor the price cannot meet takes the listing out of routing on the very next request and the
operator's routing activity says why; a multiplier listing is routed at multiplier × the operator's
reference, the price is fixed at admission and billed on the receipt, and a new reference is in effect
on the next request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests
from support.market import MODEL, Market, login

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.money import trade_cost, usd
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database

OPS_EMAIL = "ops@e2e.test"
OPS_PASSWORD = "operator-password-1"


def _operator(market: Market) -> dict[str, str]:
    async def create() -> None:
        db = await open_database(market.settings.database_url)
        try:
            await create_account(
                db, email=OPS_EMAIL, password=OPS_PASSWORD, verified=True, roles=["operator"]
            )
        finally:
            await db.close()

    asyncio.run(create())
    return login(market.origin, OPS_EMAIL, OPS_PASSWORD)


def _call(market: Market, who: dict[str, str], method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{market.origin}{path}", headers=who, timeout=30, **kw)


def _chat(market: Market) -> requests.Response:
    return requests.post(
        f"{market.base_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=30,
    )


def _receipt(market: Market, trade_id: str) -> dict[str, Any]:
    r = requests.get(
        f"{market.base_url}/generation",
        params={"id": trade_id},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _billed_at(receipt: dict[str, Any], input_price: int, output_price: int) -> str:
    cost = trade_cost(
        prompt_tokens=receipt["tokens_prompt"],
        completion_tokens=receipt["tokens_completion"],
        cached_tokens=0,
        input_price=input_price,
        output_price=output_price,
        cached_input_price=None,
        fee_bps=1_000,
        reserve_bps=500,
    )
    return usd(cost.charge)


def _wait(predicate: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)
    return value


def test_a_payout_floor_the_price_cannot_meet_stops_routing_on_the_next_request(market: Market) -> None:
    seller, ops = login(market.origin, "seller@e2e.test", "seller-password-1"), _operator(market)
    assert _chat(market).status_code == 200
    time.sleep(1.1)  # the routing activity keeps one decision per model and profile per second
    # 1 USD per 1M input tokens less the 10 % fee pays 0.9: a floor of 0.95 cannot be met.
    path = f"/v1/market/listings/{market.listing_id}"
    r = _call(market, seller, "PATCH", path, json={"payout_floor_per_mtok": "0.95"})
    assert r.status_code == 200, r.text
    assert r.json()["pricing"]["excluded"] == "payout_below_floor"
    refused = _chat(market)
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "model_not_found"

    def explained() -> dict[str, Any] | None:
        r = _call(market, ops, "GET", f"/api/admin/routing/activity?model={MODEL}&limit=1")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        return data[0] if data and data[0]["outcome"] == "refused" else None

    decision = _wait(explained)
    assert decision["error_code"] == "model_not_found"
    assert [(c["listing_id"], c["excluded"]) for c in decision["candidates"]] == [
        (market.listing_id, "payout_below_floor")
    ]
    r = _call(market, seller, "PATCH", path, json={"payout_floor_per_mtok": None})
    assert r.status_code == 200 and r.json()["pricing"]["excluded"] is None
    assert _chat(market).status_code == 200


def test_a_multiplier_listing_is_billed_at_multiplier_times_the_reference(
    market: Market, demo_seller: DemoSeller
) -> None:
    seller, ops = login(market.origin, "seller@e2e.test", "seller-password-1"), _operator(market)
    reference = f"/api/admin/reference-prices/{MODEL}"
    r = _call(
        market, ops, "PUT", reference, json={"input_price_per_mtok": "0.5", "output_price_per_mtok": "1"}
    )
    assert r.status_code == 200, r.text
    (pool_key,) = _call(market, seller, "GET", "/v1/pool/keys").json()["data"]
    created = _call(
        market,
        seller,
        "POST",
        "/v1/market/listings",
        json={
            "pool_key_id": pool_key["id"],
            "model": MODEL,
            "upstream_model": "echo-1",
            "price_multiplier": "3",
        },
    )
    assert created.status_code == 201, created.text
    lid = created.json()["id"]
    assert (created.json()["input_price_per_mtok"], created.json()["output_price_per_mtok"]) == ("1.5", "3")
    _wait(lambda: _call(market, seller, "GET", f"/v1/market/listings/{lid}").json()["status"] == "active")
    # Only the multiplier listing is left to route to.
    paused = _call(
        market, seller, "PATCH", f"/v1/market/listings/{market.listing_id}", json={"status": "paused"}
    )
    assert paused.status_code == 200, paused.text

    first = _chat(market)
    assert first.status_code == 200, first.text
    receipt = _receipt(market, first.headers["x-request-id"])
    assert receipt["listing_id"] == lid
    assert receipt["total_cost_usd"] == _billed_at(receipt, 1_500_000, 3_000_000)

    # A new reference re-prices the listing in the same request; the next trade is billed at it.
    r = _call(market, ops, "PUT", reference, json={"input_price_per_mtok": "1", "output_price_per_mtok": "2"})
    assert r.status_code == 200, r.text
    second = _chat(market)
    assert second.status_code == 200, second.text
    receipt = _receipt(market, second.headers["x-request-id"])
    assert receipt["listing_id"] == lid
    assert receipt["total_cost_usd"] == _billed_at(receipt, 3_000_000, 6_000_000)
    history = _call(market, seller, "GET", f"/v1/market/listings/{lid}/price-history").json()["data"]
    assert [(h["source"], h["input_price_per_mtok"]) for h in history] == [
        ("multiplier", "3"),
        ("multiplier", "1.5"),
    ]
