"""A listing's declared tokenizer is what Dragonfly's own usage count uses (receipt
`counted_tokens_completion`), for streamed and non-streamed answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from openai import OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller
from dragonfly.native.tokens import TokenCounter

TEXT = "你好，世界！今天天气很好"  # 11 tokens in o200k_base, 18 in cl100k_base with the echo prefix


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_local_count_uses_the_listing_encoding(
    encoding: str, tmp_path: Path, processes: ProcessGroup, demo_seller: DemoSeller
) -> None:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    asyncio.run(seed_listing(settings, demo_seller, encoding=encoding))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings)
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    expected = TokenCounter(encoding).count("Echo: " + TEXT)
    assert TokenCounter("o200k_base").count("Echo: " + TEXT) != TokenCounter("cl100k_base").count(
        "Echo: " + TEXT
    )
    for stream in (False, True):
        raw = client.chat.completions.with_raw_response.create(
            model="demo/echo-1", messages=[{"role": "user", "content": TEXT}], stream=stream
        )
        if stream:
            list(raw.parse())
        receipt = client.get(f"/generation?id={raw.headers['x-request-id']}", cast_to=object)
        assert receipt["data"]["counted_tokens_completion"] == expected, (stream, receipt)  # type: ignore[index]
