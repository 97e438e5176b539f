"""Embeddings through the market with the real openai SDK: routed to an embeddings listing, billed on
input tokens, receipted."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import requests
from openai import OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller


def test_embeddings_are_routed_billed_and_receipted(
    database_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    asyncio.run(seed_listing(settings, demo_seller, model="demo/embed-1", kind="embeddings"))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="demo/embed-1", input=["hello world", "second"])
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert result.model == "demo/embed-1"
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": raw.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    assert receipt["status"] == "completed" and receipt["streamed"] is False
    assert receipt["tokens_prompt"] == result.usage.prompt_tokens > 0
    assert Decimal(receipt["total_cost_usd"]) > 0
    # A chat model name is not an embeddings listing.
    chat = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/embed-1", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
