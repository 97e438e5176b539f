"""A prompt longer than every listing's context window is refused before any seller sees it (and costs
nothing); listings too small for a prompt are skipped in favour of one that fits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

LONG = [{"role": "user", "content": "word " * 400}]  # ~400 tokens
SHORT = [{"role": "user", "content": "Hello"}]


def test_a_prompt_over_every_context_window_is_refused_before_any_seller(
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller = demo_seller_factory()
    asyncio.run(seed_listing(settings, seller, context_length=128))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)
    seller.stats.reset()
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.with_raw_response.create(model="demo/echo-1", messages=LONG)
    assert exc.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert "128 tokens" in exc.value.message
    assert seller.stats.requests == 0
    # A short prompt fits, but not with a completion that would overflow the window either.
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="demo/echo-1", messages=SHORT, max_tokens=500)
    assert seller.stats.requests == 0
    assert client.chat.completions.create(model="demo/echo-1", messages=SHORT).choices[0].message.content
    assert seller.stats.requests == 1
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": exc.value.response.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["status"] == "failed" and receipt["total_cost_usd"] == "0.000000"


def test_listings_too_small_for_the_prompt_are_skipped(
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    small, large = demo_seller_factory(), demo_seller_factory()
    # The small listing is cheaper, so every profile would rank it first.
    asyncio.run(seed_listing(settings, small, context_length=128, input_price="0.10", output_price="0.10"))
    asyncio.run(seed_listing(settings, large, seller_email="large@e2e.test", context_length=32_000))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)
    small.stats.reset()
    large.stats.reset()
    for _ in range(3):
        client.chat.completions.create(model="demo/echo-1", messages=LONG)
    assert (small.stats.requests, large.stats.requests) == (0, 3)
    client.chat.completions.create(model="demo/echo-1", messages=SHORT, extra_body={"max_tokens": 16})
    assert small.stats.requests == 1
