"""Hedging and mid-stream continuation, end to end: `dragonfly serve` subprocesses (one on SQLite; two on
one PostgreSQL + Redis, requests alternating between them), the `openai` SDK, and two fake sellers that
are honest at admission — CHEAP (the cost_first choice) turns slow or dies mid-stream afterwards.

- Hedged: with CHEAP silent for 1.5 s, a profile hedging after 200 ms is answered by PRICEY in about
  200 ms plus PRICEY's time; billed once, for PRICEY; CHEAP's attempt is on the receipt as the lost
  hedge, its connection closed (the seller sees the cancel) and its hold voided.
- Continued: CHEAP dies after two words; the buyer receives one well-formed stream with the whole answer
  (PRICEY continues from the text so far); CHEAP's part is a trade of its own billed to CHEAP, the rest
  is billed to PRICEY, and the receipt links both.
- A profile without fallback is not continued: the stream ends with an error event.
The books pass `dragonfly admin check-ledger` and nothing stays held after each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import APIError, OpenAI
from support.health_market import MODEL, HealthMarket, open_market, seed_two_sellers, start_gateways
from support.market import market_settings
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

PROMPT = "Hello there general Kenobi"
ANSWER = "Echo: " + PROMPT
HEDGE_AFTER_MS = 200
SLOW_S = 1.5


class Market:
    """The health market, a way to alternate gateways, and keys bound to profiles made on the fly."""

    def __init__(self, m: HealthMarket, origins: list[str], pricey: DemoSeller) -> None:
        self.m = m
        self.pricey_seller = pricey
        self._origins: Iterator[str] = cycle(origins)

    def origin(self) -> str:
        return next(self._origins)

    def key(self, profile: dict[str, Any]) -> str:
        made = requests.post(
            f"{self.m.origin}/api/routing/profiles",
            json={"name": "p", "strategy": "cost_first", **profile},
            headers=self.m.buyer,
            timeout=10,
        )
        assert made.status_code == 201, made.text
        key = requests.post(
            f"{self.m.origin}/api/keys",
            json={"routing_profile_id": made.json()["id"]},
            headers=self.m.buyer,
            timeout=10,
        )
        assert key.status_code == 201, key.text
        return str(key.json()["key"])

    def receipt(self, key: str, trade_id: str) -> dict[str, Any]:
        r = requests.get(
            f"{self.m.origin}/v1/generation",
            params={"id": trade_id},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])


@pytest.fixture
def market(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> Market:
    settings = market_settings(database_url, tmp_path / "data")
    cheap, pricey = demo_seller_factory(), demo_seller_factory()
    ids = seed_two_sellers(settings, cheap, pricey)
    origins, redis_url = start_gateways(request, database_url, processes, settings)
    return Market(open_market(origins[0], settings, redis_url, cheap, ids), origins, pricey)


def _client(origin: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)


def _wait_until(predicate: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_hedged_request_is_answered_by_the_fast_listing_and_billed_once(market: Market) -> None:
    m = market.m
    key = market.key({"hedge": {"enabled": True, "after_ms": HEDGE_AFTER_MS}})
    # Honest and fast: the hedge never fires, CHEAP answers alone.
    plain = _client(market.origin(), key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}]
    )
    calm = market.receipt(key, plain.headers["x-request-id"])
    assert calm["listing_id"] == m.cheap and [a["status"] for a in calm["attempts"]] == ["ok"]

    m.cheap_seller.config.first_token_delay_s = SLOW_S
    for stream in (False, True):
        cancelled_before = m.cheap_seller.stats.cancelled
        started = time.monotonic()
        client = _client(market.origin(), key)
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            request_id = raw.headers["x-request-id"]
        else:
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": PROMPT}]
            )
            text, request_id = raw.parse().choices[0].message.content or "", raw.headers["x-request-id"]
        took = time.monotonic() - started
        assert text == ANSWER
        # About after_ms plus the fast seller's time, far from the slow seller's 1.5 s.
        assert HEDGE_AFTER_MS / 1000 <= took < 1.0, took
        r = market.receipt(key, request_id)
        assert r["listing_id"] == m.pricey and r["status"] == "completed"
        assert [(a["listing_id"], a["status"], a.get("error_type")) for a in r["attempts"]] == [
            (m.cheap, "cancelled", "hedge_lost"),
            (m.pricey, "ok", None),
        ]
        # Billed once, at PRICEY's price (1.00 per Mtok both ways).
        tokens = r["tokens_prompt"] + r["tokens_completion"]
        assert Decimal(r["total_cost_usd"]) == Decimal(tokens) / 1_000_000
        if stream:
            # The loser's connection was closed: CHEAP's stream sees the buyer gone when it writes.
            _wait_until(lambda before=cancelled_before: m.cheap_seller.stats.cancelled > before, SLOW_S + 2)
    # Losing a race is not a failure: CHEAP's contract is untouched.
    assert m.contract()["status"] == "active"
    m.assert_books_clean()

    # Without hedging the same request waits for CHEAP.
    started = time.monotonic()
    _client(market.origin(), m.cost_first_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}]
    )
    assert time.monotonic() - started >= SLOW_S


def test_stream_broken_mid_way_is_continued_and_each_seller_billed_for_its_part(market: Market) -> None:
    m = market.m
    key = m.cost_first_key
    # Role preamble, "Echo: ", "Hello ", then CHEAP's connection closes.
    m.cheap_seller.config.drop_mid_stream_after = 3
    client = _client(market.origin(), key)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    request_id = raw.headers["x-request-id"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert {c.id for c in chunks} == {request_id}
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]  # one preamble: the continuation's own was dropped
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]

    r = market.receipt(key, request_id)
    assert r["status"] == "completed" and r["listing_id"] == m.pricey
    (broken, served) = r["attempts"]
    assert (broken["listing_id"], broken["status"], broken["error_type"]) == (
        m.cheap,
        "continued",
        "broken_stream",
    )
    assert (served["listing_id"], served["status"]) == (m.pricey, "ok")
    # PRICEY reported its own part: the prompt with the prefix (4 + 3 and 2 + 3 words), three words.
    assert (r["tokens_prompt"], r["tokens_completion"]) == (12, 3)
    assert Decimal(r["total_cost_usd"]) == Decimal(15) / 1_000_000

    part = market.receipt(key, broken["trade_id"])
    assert part["status"] == "continued" and part["listing_id"] == m.cheap
    assert part["tokens_prompt"] == 0 and part["tokens_completion"] > 0  # what CHEAP produced, no prompt
    expected = (Decimal(part["tokens_completion"]) * Decimal("0.50") / 1_000_000).quantize(
        Decimal("0.000001")
    )
    assert Decimal(part["total_cost_usd"]) == expected
    m.assert_books_clean()


def test_stream_is_not_continued_when_the_profile_has_no_fallback(market: Market) -> None:
    m = market.m
    key = market.key({"fallback": {"enabled": False}})
    pricey_before = market.pricey_seller.stats.requests
    m.cheap_seller.config.drop_mid_stream_after = 3
    received: list[str] = []
    raw = _client(market.origin(), key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    request_id = raw.headers["x-request-id"]
    with pytest.raises(APIError, match="failed mid-stream"):
        for c in raw.parse():
            received.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(received) == "Echo: Hello "
    r = market.receipt(key, request_id)
    assert (r["status"], r["listing_id"], r["finish_reason"]) == ("failed", m.cheap, "error")
    assert [a["status"] for a in r["attempts"]] == ["ok"]
    # Billed for what it delivered, as any broken stream; PRICEY was never asked to go on.
    assert r["tokens_completion"] > 0 and Decimal(r["total_cost_usd"]) > 0
    assert market.pricey_seller.stats.requests == pricey_before
    m.assert_books_clean()


def test_a_continuation_the_budget_cannot_cover_ends_the_stream_as_refused(market: Market) -> None:
    m = market.m
    # A key whose monthly budget (1 cent) covers CHEAP's hold for max_tokens 15000 (0.50 per Mtok) but
    # not PRICEY's for the rest (1.00 per Mtok): the next leg's admission is refused.
    made = requests.post(
        f"{m.origin}/api/routing/profiles", json={"name": "b", "strategy": "cost_first"}, headers=m.buyer
    )
    assert made.status_code == 201, made.text
    created = requests.post(
        f"{m.origin}/api/keys",
        json={"routing_profile_id": made.json()["id"], "monthly_budget_cents": 1},
        headers=m.buyer,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    key = str(created.json()["key"])
    pricey_before = market.pricey_seller.stats.requests
    m.cheap_seller.config.drop_mid_stream_after = 3
    received: list[str] = []
    raw = _client(market.origin(), key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True, max_tokens=15000
    )
    request_id = raw.headers["x-request-id"]
    # The documented end of a stream that could not be continued: the error event, then [DONE].
    with pytest.raises(APIError, match="failed mid-stream"):
        for c in raw.parse():
            received.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(received) == "Echo: Hello "
    r = market.receipt(key, request_id)
    # Not `cancelled`: the trade says why it ended.
    assert (r["status"], r["error_code"], r["finish_reason"]) == ("failed", "budget_exceeded", "error")
    assert Decimal(r["total_cost_usd"]) == 0
    (broken,) = r["attempts"]
    assert (broken["listing_id"], broken["status"]) == (m.cheap, "continued")
    part = market.receipt(key, broken["trade_id"])
    assert part["status"] == "continued" and Decimal(part["total_cost_usd"]) > 0
    assert market.pricey_seller.stats.requests == pricey_before  # refused before PRICEY was called
    m.assert_books_clean()
