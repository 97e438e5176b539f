"""The buyer's view through the real `openai` SDK against a running `dragonfly serve`, on both storage
backends: answers, receipts, money moved exactly, and the documented errors."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import openai
import pytest
import requests
from openai import OpenAI
from support.market import Market, seed_buyer

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.ledger import buyer_cash, seller_locked, seller_reserve
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

MESSAGES = [{"role": "user", "content": "Hello market"}]


def client(m: Market, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=m.base_url, api_key=key or m.buyer_key, max_retries=0, timeout=30)


async def _balances(m: Market) -> tuple[int, int]:
    db = await open_database(m.settings.database_url)
    try:
        buyer = await ledger.balance(db, buyer_cash(m.buyer_id))
        seller = await ledger.balance(db, seller_locked(m.seller_id)) + await ledger.balance(
            db, seller_reserve(m.seller_id)
        )
        return buyer, seller
    finally:
        await db.close()


def balances(m: Market) -> tuple[int, int]:
    return asyncio.run(_balances(m))


def micros(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


def receipt(m: Market, request_id: str) -> dict:
    r = requests.get(
        f"{m.base_url}/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {m.buyer_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"]
    return r.json()["data"]


def test_non_streaming_chat_is_answered_billed_and_receipted(market: Market) -> None:
    before_buyer, before_seller = balances(market)
    raw = client(market).chat.completions.with_raw_response.create(model="demo/echo-1", messages=MESSAGES)
    request_id = raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.choices[0].message.content == "Echo: Hello market"
    assert resp.model == "demo/echo-1"
    assert resp.id == request_id
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    r = receipt(market, request_id)
    assert r["status"] == "completed" and r["listing_id"] == market.listing_id
    assert r["seller_id"] == market.seller_id and r["provider"] == "custom"
    assert r["tokens_prompt"] == resp.usage.prompt_tokens
    assert r["tokens_completion"] == resp.usage.completion_tokens
    assert r["upstream_model"] == "echo-1" and r["streamed"] is False
    cost, payout, fee = (
        micros(r["total_cost_usd"]),
        micros(r["seller_payout_usd"]),
        micros(r["platform_fee_usd"]),
    )
    assert cost > 0 and cost == payout + fee
    after_buyer, after_seller = balances(market)
    assert before_buyer - after_buyer == cost
    assert after_seller - before_seller == payout


def test_streaming_chat_delivers_content_and_usage(market: Market) -> None:
    before_buyer, _ = balances(market)
    raw = client(market).chat.completions.with_raw_response.create(
        model="demo/echo-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    request_id = raw.headers["x-request-id"]
    text, usage, ids = "", None, set()
    for chunk in raw.parse():
        ids.add(chunk.id)
        assert chunk.model == "demo/echo-1"
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "Echo: Hello market"
    assert ids == {request_id}
    assert usage is not None and usage.completion_tokens > 0
    r = receipt(market, request_id)
    assert r["streamed"] is True and r["status"] == "completed" and r["finish_reason"] == "stop"
    assert r["tokens_completion"] == usage.completion_tokens
    after_buyer, _ = balances(market)
    assert before_buyer - after_buyer == micros(r["total_cost_usd"])


def test_sequential_streams_reuse_one_seller_connection(market: Market, demo_seller: DemoSeller) -> None:
    # The seller ends the body 20 ms after `[DONE]`: the gateway answers the buyer at `[DONE]` and must
    # still give the connection back to its pool rather than close it and open another for each stream.
    c = client(market)
    demo_seller.config.end_delay_s = 0.02
    demo_seller.stats.reset()
    for _ in range(4):
        stream = c.chat.completions.create(model="demo/echo-1", messages=MESSAGES, stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert text == "Echo: Hello market"
        time.sleep(0.05)  # the body's end arrives after the buyer's stream ended
    assert demo_seller.stats.requests == 4
    assert demo_seller.stats.connections == 1


def test_seller_dying_mid_stream_is_an_api_error_in_the_sdk(market: Market, demo_seller: DemoSeller) -> None:
    # Honest during admission (the fixture probed it), then the seller drops the connection after two
    # chunks: the buyer keeps what arrived and the SDK raises the error event as `openai.APIError`.
    demo_seller.config.drop_mid_stream_after = 2
    raw = client(market).chat.completions.with_raw_response.create(
        model="demo/echo-1", messages=MESSAGES, stream=True
    )
    request_id = raw.headers["x-request-id"]
    text = ""
    with pytest.raises(openai.APIError, match="failed mid-stream") as exc:
        for chunk in raw.parse():
            assert chunk.id == request_id
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    assert text and "Echo: Hello market".startswith(text) and text != "Echo: Hello market"
    assert exc.value.body == {
        "message": "The upstream provider failed mid-stream.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }
    assert receipt(market, request_id)["status"] == "failed"


def test_a_stream_that_broke_mid_way_still_ends(market: Market, demo_seller: DemoSeller) -> None:
    # After the error event and [DONE] the response must end: a plain HTTP client reads to the end.
    demo_seller.config.drop_mid_stream_after = 2
    started = time.monotonic()
    with requests.post(
        f"{market.base_url}/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        stream=True,
        timeout=(5, 5),
    ) as r:
        body = b"".join(r.iter_content(None))
    assert body.endswith(b"data: [DONE]\n\n") and b"failed mid-stream" in body
    assert time.monotonic() - started < 5


def test_wrong_key_is_an_authentication_error(market: Market) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        client(market, key="sk-df-" + "x" * 43).chat.completions.create(
            model="demo/echo-1", messages=MESSAGES
        )
    assert exc.value.response.headers["x-request-id"]
    assert exc.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_unknown_model_is_not_found(market: Market) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client(market).chat.completions.create(model="nobody/nothing", messages=MESSAGES)
    assert exc.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_empty_balance_is_402_without_retry(market: Market) -> None:
    _, broke_key = asyncio.run(seed_buyer(market.settings, credit_cents=0, email="broke@e2e.test"))
    import time

    time.sleep(1.5)  # the new key reaches the data plane's snapshot
    raw = requests.post(
        f"{market.base_url}/chat/completions",
        json={"model": "demo/echo-1", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {broke_key}"},
        timeout=10,
    )
    assert raw.status_code == 402
    assert raw.headers["x-should-retry"] == "false"
    assert raw.headers["x-request-id"]
    assert raw.json()["error"]["code"] == "insufficient_balance"
    with pytest.raises(openai.APIStatusError) as exc:
        client(market, key=broke_key).chat.completions.create(model="demo/echo-1", messages=MESSAGES)
    assert exc.value.status_code == 402


def test_bad_json_is_invalid_request(market: Market) -> None:
    r = requests.post(
        f"{market.base_url}/chat/completions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {market.buyer_key}", "content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request" and r.headers["x-request-id"]
    assert "Traceback" not in r.text


def test_models_lists_the_market(market: Market) -> None:
    models = client(market).models.list()
    ids = {m.id for m in models.data}
    assert "demo/echo-1" in ids
    entry = next(m for m in models.data if m.id == "demo/echo-1").model_dump()
    assert entry["listings"] == 1 and entry["pricing"]["input_per_mtok"]["min"] == "1"


def test_large_prompt_is_served_and_oversized_body_refused(market: Market) -> None:
    words = "lorem " * 60_000  # ~360 KB: parsed and counted off the event loop
    resp = client(market).chat.completions.create(
        model="demo/echo-1", messages=[{"role": "user", "content": words}], max_tokens=5
    )
    assert resp.choices[0].message.content == "Echo: lorem lorem lorem lorem"
    assert resp.usage is not None and resp.usage.prompt_tokens > 50_000
    too_big = requests.post(
        f"{market.base_url}/chat/completions",
        data=b'{"model": "demo/echo-1", "messages": [{"role": "user", "content": "'
        + b"x" * (5 << 20)
        + b'"}]}',
        headers={"Authorization": f"Bearer {market.buyer_key}", "content-type": "application/json"},
        timeout=30,
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "request_too_large" and too_big.headers["x-request-id"]


def test_usage_and_balance_read_right_after_a_response_include_it(market: Market) -> None:
    # On the embedded default a trade reaches the database a few ms after its response (the settlement
    # log is the durable point); the management API behind the gateway must still show it at once.
    token = requests.post(
        f"{market.origin}/api/auth/login",
        json={"email": "buyer@e2e.test", "password": "buyer-password-1"},
        timeout=10,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    start = requests.get(f"{market.origin}/api/billing/balance", headers=auth, timeout=10).json()
    sdk = client(market)
    spent = Decimal(0)
    for n in range(1, 6):
        raw = sdk.chat.completions.with_raw_response.create(model="demo/echo-1", messages=MESSAGES)
        raw.parse()
        usage = requests.get(f"{market.origin}/api/usage", headers=auth, timeout=10)
        assert usage.status_code == 200, usage.text
        assert usage.json()["requests"] == n
        balance = requests.get(f"{market.origin}/api/billing/balance", headers=auth, timeout=10).json()
        spent = Decimal(start["balance_usd"]) - Decimal(balance["balance_usd"])
        assert spent == Decimal(usage.json()["cost_usd"]) > 0
    assert spent > 0
