"""A seller that turns to reporting 3x the tokens after its admission probe, through a running
`dragonfly serve` (SQLite and PostgreSQL) with the real openai SDK: on a listing whose tokenizer is exact
(declared `encoding`), the buyer is billed Dragonfly's count + slack (domain/billing.py), within the slack
of what the same request cost from the honest seller; the receipt shows the reported, counted and billed
tokens; and `dragonfly admin check-ledger` passes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI
from support.market import SECRET, Market, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.billing import SLACK_PERCENT, SLACK_TOKENS, allowance
from dragonfly.native.tokens import TokenCounter

# Common English words, one o200k_base token each: the demo seller's word count (its "tokenizer") and
# Dragonfly's count agree on the text. They differ by fixed amounts elsewhere: the demo counts 3 tokens a
# message where the chat accounting counts 3 + the role (1) + 3 priming the reply (prompt: 4 fewer), and
# "Echo:" is one word but two tokens (completion: 1 fewer).
TEXT = (
    "the market is open and every seller who reports more tokens than it served is paid only for what "
    "the gateway counted plus a small slack so the buyer pays what the honest seller would have asked "
    "for the same answer today"
)
INPUT_MICROS, OUTPUT_MICROS = 10, 30  # "10.00" / "30.00" USD per 1M tokens
PROMPT_GAP, COMPLETION_GAP = 4, 1  # the demo seller's honest counts, below Dragonfly's


@pytest.fixture
def exact_market(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller, processes: ProcessGroup
) -> Iterator[Market]:
    settings = market_settings(database_url, tmp_path / "data")
    seller_id, listing_id = asyncio.run(
        seed_listing(settings, demo_seller, input_price="10.00", output_price="30.00", encoding="o200k_base")
    )
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=500))
    origin = start_serve(processes, settings)
    yield Market(f"{origin}/v1", origin, key, buyer_id, seller_id, listing_id, settings)


def _trade(client: OpenAI, stream: bool) -> str:
    messages: Any = [{"role": "user", "content": TEXT}]
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="demo/echo-1", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(raw.parse())
        assert chunks[-1].usage is not None  # the seller's usage, relayed as the seller sent it
    else:
        raw = client.chat.completions.with_raw_response.create(model="demo/echo-1", messages=messages)
        assert raw.parse().choices[0].message.content == "Echo: " + TEXT
    return raw.headers["x-request-id"]


def _receipt(market: Market, trade_id: str) -> dict[str, Any]:
    r = requests.get(
        f"{market.base_url}/generation",
        params={"id": trade_id},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _micros(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


def _check_ledger(market: Market) -> None:
    env = {
        **os.environ,
        "DRAGONFLY_DATABASE_URL": market.settings.database_url,
        "DRAGONFLY_DATA_DIR": market.settings.data_dir,
        "DRAGONFLY_SECRET_KEY": SECRET,
    }
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", "admin", "check-ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_seller_reporting_three_times_the_tokens_is_paid_the_count_plus_slack(
    exact_market: Market, demo_seller: DemoSeller
) -> None:
    market = exact_market
    client = OpenAI(base_url=market.base_url, api_key=market.buyer_key, max_retries=0, timeout=30)
    prompt_counted = TokenCounter("o200k_base").count(TEXT) + 7  # 3 + role + text + 3 (chat accounting)
    completion_counted = TokenCounter("o200k_base").count("Echo: " + TEXT)

    for stream in (False, True):
        demo_seller.config.usage_multiplier = 1
        honest = _receipt(market, _trade(client, stream))
        # Admitted long ago; now it reports three times what it produced.
        demo_seller.config.usage_multiplier = 3
        inflated = _receipt(market, _trade(client, stream))

        # The honest seller reports a little less than Dragonfly counts: billed as reported.
        assert (honest["counted_tokens_prompt"], honest["counted_tokens_completion"]) == (
            prompt_counted,
            completion_counted,
        )
        assert (honest["native_tokens_prompt"], honest["native_tokens_completion"]) == (
            prompt_counted - PROMPT_GAP,
            completion_counted - COMPLETION_GAP,
        )
        assert (honest["tokens_prompt"], honest["tokens_completion"]) == (
            honest["native_tokens_prompt"],
            honest["native_tokens_completion"],
        )
        assert honest["usage_audit"] == "ok", honest

        # The receipt shows the three figures: reported (3x), counted (as before), billed (count + slack).
        assert inflated["streamed"] is stream
        assert (inflated["native_tokens_prompt"], inflated["native_tokens_completion"]) == (
            3 * honest["native_tokens_prompt"],
            3 * honest["native_tokens_completion"],
        )
        assert (inflated["counted_tokens_prompt"], inflated["counted_tokens_completion"]) == (
            prompt_counted,
            completion_counted,
        )
        assert (inflated["tokens_prompt"], inflated["tokens_completion"]) == (
            allowance(prompt_counted),
            allowance(completion_counted),
        )
        assert inflated["usage_audit"] == "flagged"  # 3x is past the review threshold (1.5x + 16)

        # Within the slack of the honest bill (plus the demo's own accounting gap), far from 3x.
        for kind, gap in (("prompt", PROMPT_GAP), ("completion", COMPLETION_GAP)):
            extra = inflated[f"tokens_{kind}"] - honest[f"tokens_{kind}"]
            counted = inflated[f"counted_tokens_{kind}"]
            assert extra <= -(-counted * SLACK_PERCENT // 100) + SLACK_TOKENS + gap, (kind, extra)
        honest_cost, inflated_cost = _micros(honest["total_cost_usd"]), _micros(inflated["total_cost_usd"])
        assert honest_cost == (
            honest["tokens_prompt"] * INPUT_MICROS + honest["tokens_completion"] * OUTPUT_MICROS
        )
        assert inflated_cost == (
            allowance(prompt_counted) * INPUT_MICROS + allowance(completion_counted) * OUTPUT_MICROS
        )
        assert inflated_cost < honest_cost * 1.2 < 3 * honest_cost
        payout = _micros(inflated["seller_payout_usd"]) + _micros(inflated["platform_fee_usd"])
        assert payout == inflated_cost  # the seller is paid from what the buyer was billed, nothing more

    _check_ledger(market)
