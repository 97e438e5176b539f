"""POST /v1/audio/speech through the market with the real openai SDK, on SQLite and on PostgreSQL + Redis:
the seller's audio arrives byte for byte and streamed (before the seller finished), billed per input
character or per token as the listing states (exact micro-USD on the receipt and the balance), falls back
before the first byte, costs nothing when it fails, 404s for a model without a speech listing, and the
books balance afterwards (the ledger checker, with the state store on Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import requests
from openai import OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.config import Settings
from dragonfly.demo import audio
from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.ledger import buyer_cash, seller_locked, seller_reserve
from dragonfly.native.tokens import TokenCounter
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.state.redis import RedisStateStore

# Non-ASCII on purpose: a character is a Unicode code point, not a byte.
TEXT = "The market is open: speak this, please. Été, naïve café!"
CHARACTER_PRICE_MICROS = 15  # "15.00" USD per 1M characters = 15 micro-USD per character
TOKEN_PRICE_MICROS = 30  # "30.00" USD per 1M tokens


@dataclass
class Market:
    origin: str
    key: str
    buyer_id: str
    settings: Settings
    redis_url: str | None

    def client(self) -> OpenAI:
        return OpenAI(base_url=f"{self.origin}/v1", api_key=self.key, max_retries=0, timeout=30)

    def receipt(self, request_id: str) -> dict:
        r = requests.get(
            f"{self.origin}/v1/generation",
            params={"id": request_id},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def balance(self, account: str) -> int:
        return asyncio.run(_balance(self.settings.database_url, account))

    def ledger_violations(self) -> list[str]:
        return asyncio.run(_violations(self.settings.database_url, self.redis_url))


async def _balance(url: str, account: str) -> int:
    db = await open_database(url)
    try:
        return await ledger.balance(db, account)
    finally:
        await db.close()


async def _violations(url: str, redis_url: str | None) -> list[str]:
    db = await open_database(url)
    store = RedisStateStore(redis_url) if redis_url else None
    try:
        return [str(v) for v in await check_ledger(db, store)]
    finally:
        if store is not None:
            await store.close()
        await db.close()


def _serve(
    database_url: str, request: pytest.FixtureRequest, processes: ProcessGroup, settings: Settings
) -> tuple[str, str | None]:
    redis_url = None
    if database_url.startswith("postgresql"):
        redis_url = str(request.getfixturevalue("fresh_redis_url"))
    env = {"DRAGONFLY_REDIS_URL": redis_url} if redis_url else {}
    return start_serve(processes, settings, extra_env=env), redis_url


def _market(
    database_url: str, request: pytest.FixtureRequest, processes: ProcessGroup, settings: Settings
) -> Market:
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin, redis_url = _serve(database_url, request, processes, settings)
    return Market(origin, key, buyer_id, settings, redis_url)


def micros(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


def test_audio_is_relayed_unchanged_streamed_and_billed_as_the_listing_states(
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller = demo_seller_factory(chunk_delay_s=0.15)
    chars_seller, chars_listing = asyncio.run(
        seed_listing(
            settings,
            seller,
            model="demo/tts-chars",
            kind="speech",
            input_price="15.00",
            output_price="0",
            price_unit="character",
            seller_email="chars@e2e.test",
        )
    )
    _, tokens_listing = asyncio.run(
        seed_listing(
            settings,
            seller,
            model="demo/tts-tokens",
            kind="speech",
            input_price="30.00",
            output_price="0",
            encoding="cl100k_base",  # the listing's tokenizer is what the input is counted with
            seller_email="tokens@e2e.test",
        )
    )
    m = _market(database_url, request, processes, settings)
    client = m.client()
    kinds = {x.id: (x.model_extra or {}).get("kind") for x in client.models.list()}
    assert kinds == {"demo/tts-chars": "speech", "demo/tts-tokens": "speech"}
    before = m.balance(buyer_cash(m.buyer_id))

    # Per character: streamed — the first bytes arrive while the seller is still sending.
    expected = audio.speech(TEXT, "wav", 2.0)
    assert len(audio.chunks(expected)) >= 3
    seller.stats.reset()  # the admission probes were answered already
    with client.audio.speech.with_streaming_response.create(
        model="demo/tts-chars",
        input=TEXT,
        voice="alloy",
        response_format="wav",
        speed=2.0,
        instructions="calm",
    ) as resp:
        assert resp.headers["content-type"] == "audio/wav"
        request_id = resp.headers["x-request-id"]
        pieces, seller_done_at_first = [], None
        for piece in resp.iter_bytes():
            if seller_done_at_first is None:
                seller_done_at_first = seller.stats.completed
            pieces.append(piece)
    assert seller_done_at_first == 0  # the first bytes came before the seller had finished sending
    assert b"".join(pieces) == expected
    deadline = time.monotonic() + 5
    while seller.stats.completed == 0 and time.monotonic() < deadline:  # its thread counts it last
        time.sleep(0.01)
    assert seller.stats.completed == 1
    # The body was passed through; only the model was substituted.
    assert seller.stats.last_request == {
        "model": "echo-1",
        "input": TEXT,
        "voice": "alloy",
        "response_format": "wav",
        "speed": 2.0,
        "instructions": "calm",
    }
    r = m.receipt(request_id)
    assert (r["status"], r["listing_id"], r["price_unit"]) == ("completed", chars_listing, "character")
    assert r["characters_prompt"] == len(TEXT) != len(TEXT.encode())
    assert r["tokens_prompt"] == TokenCounter("o200k_base").count(TEXT) and r["tokens_completion"] == 0
    chars_cost = len(TEXT) * CHARACTER_PRICE_MICROS
    assert micros(r["total_cost_usd"]) == chars_cost
    assert r["ttft_ms"] is not None and [a["status"] for a in r["attempts"]] == ["ok"]
    earned = m.balance(seller_locked(chars_seller)) + m.balance(seller_reserve(chars_seller))
    assert earned == micros(r["seller_payout_usd"]) > 0

    # Per token, through the SDK's plain call (no response_format: the seller's default, wav).
    raw = client.audio.speech.with_raw_response.create(model="demo/tts-tokens", input=TEXT, voice="alloy")
    assert raw.content == audio.speech(TEXT, "wav")
    r = m.receipt(raw.headers["x-request-id"])
    assert (r["status"], r["listing_id"], r["price_unit"]) == ("completed", tokens_listing, "token")
    tokens = TokenCounter("cl100k_base").count(TEXT)
    assert r["tokens_prompt"] == tokens and r["characters_prompt"] == len(TEXT)
    assert micros(r["total_cost_usd"]) == tokens * TOKEN_PRICE_MICROS

    assert before - m.balance(buyer_cash(m.buyer_id)) == chars_cost + tokens * TOKEN_PRICE_MICROS
    assert m.ledger_violations() == []


def test_fallback_before_the_first_byte_failures_cost_nothing_and_wrong_models_404(
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    cheap, sound = demo_seller_factory(), demo_seller_factory(chunk_delay_s=0.05)
    speech: dict[str, Any] = {
        "model": "demo/tts-1",
        "kind": "speech",
        "output_price": "0",
        "price_unit": "character",
    }
    _, cheap_listing = asyncio.run(
        seed_listing(settings, cheap, seller_email="cheap@e2e.test", input_price="0.50", **speech)
    )
    _, sound_listing = asyncio.run(
        seed_listing(settings, sound, seller_email="sound@e2e.test", input_price="5.00", **speech)
    )
    asyncio.run(seed_listing(settings, sound, seller_email="chat@e2e.test"))  # chat: demo/echo-1
    m = _market(database_url, request, processes, settings)
    client = m.client()
    balance = m.balance(buyer_cash(m.buyer_id))

    # The cheapest listing fails after admission: the next one answers, and only it is billed.
    cheap.config.fail_status = 503
    raw = client.audio.speech.with_raw_response.create(model="demo/tts-1", input=TEXT, voice="alloy")
    assert raw.content == audio.speech(TEXT, "wav")
    r = m.receipt(raw.headers["x-request-id"])
    assert r["listing_id"] == sound_listing
    assert [(a["listing_id"], a.get("error_type")) for a in r["attempts"]] == [
        (cheap_listing, "http_503"),
        (sound_listing, None),
    ]
    assert micros(r["total_cost_usd"]) == len(TEXT) * 5
    assert balance - m.balance(buyer_cash(m.buyer_id)) == len(TEXT) * 5
    balance = m.balance(buyer_cash(m.buyer_id))

    # Every listing fails: 502, a receipt, and no charge.
    sound.config.fail_status = 503
    with pytest.raises(openai.InternalServerError) as failed:
        client.audio.speech.create(model="demo/tts-1", input=TEXT, voice="alloy")
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    r = m.receipt(failed.value.response.headers["x-request-id"])
    assert (r["status"], r["total_cost_usd"]) == ("failed", "0.000000")
    assert [a["error_type"] for a in r["attempts"]] == ["http_503", "http_503"]
    assert m.balance(buyer_cash(m.buyer_id)) == balance

    # The seller breaks off mid-audio (after its declared length started): the buyer's client sees an
    # incomplete body, the trade is failed and costs nothing.
    sound.config.fail_status = None
    sound.config.audio_content_length = True
    sound.config.drop_mid_stream_after = 1
    with client.audio.speech.with_streaming_response.create(
        model="demo/tts-1", input=TEXT, voice="alloy"
    ) as resp:
        request_id = resp.headers["x-request-id"]
        with pytest.raises(httpx2.RemoteProtocolError, match="without sending complete message body"):
            resp.read()
    r = m.receipt(request_id)
    assert (r["status"], r["error_code"], r["total_cost_usd"]) == ("failed", "upstream_error", "0.000000")
    assert m.balance(buyer_cash(m.buyer_id)) == balance

    # Models without a speech listing, and a speech model asked for chat: 404 with a request id.
    for model in ("demo/nope", "demo/echo-1"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.audio.speech.create(model=model, input=TEXT, voice="alloy")
        assert missing.value.code == "model_not_found" and missing.value.response.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="demo/tts-1", messages=[{"role": "user", "content": "hi"}])
    # A request Dragonfly cannot bill is refused before any seller: 400, with a receipt.
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.speech.create(model="demo/tts-1", input="", voice="alloy")
    assert bad.value.code == "invalid_request"
    assert m.receipt(bad.value.response.headers["x-request-id"])["status"] == "failed"
    assert m.balance(buyer_cash(m.buyer_id)) == balance
    assert m.ledger_violations() == []
