"""A listing that turns slow is not hedged around for ever: end to end with `dragonfly serve` (one on
SQLite; two on one PostgreSQL + Redis, requests alternating), the `openai` SDK and two fake sellers.

CHEAP answers its admission probe at once and PRICEY after 300 ms, so a latency-weighted profile ranks
CHEAP first. Then CHEAP turns slow (1.5 s to its first byte) and PRICEY fast. A profile hedging after
200 ms is answered by PRICEY each time; the hedged-around CHEAP never produces a first byte, so without
the lost leg's time counting as a lower bound of its TTFT its estimate would stay at the probe's and
every request would wait 200 ms for a hedge. With it, each instance's market learns within a few
requests that CHEAP is slower than PRICEY, and later requests go to PRICEY first, unhedged."""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import pytest
import requests
from openai import OpenAI
from support.health_market import MODEL, HealthMarket, open_market, seed_two_sellers, start_gateways
from support.market import market_settings
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

HEDGE_AFTER_MS = 200
REQUESTS_PER_INSTANCE = 10


@pytest.fixture
def market(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> tuple[HealthMarket, list[str], DemoSeller]:
    settings = market_settings(database_url, tmp_path / "data")
    cheap, pricey = demo_seller_factory(), demo_seller_factory(first_token_delay_s=0.3)
    ids = seed_two_sellers(settings, cheap, pricey)  # each passes its admission probe: TTFT measured
    pricey.config.first_token_delay_s = 0.0
    origins, redis_url = start_gateways(request, database_url, processes, settings)
    return open_market(origins[0], settings, redis_url, cheap, ids), origins, pricey


def _latency_key(m: HealthMarket) -> str:
    weights = {"price": 0, "latency": 1, "throughput": 0, "reliability": 0, "quality": 0}
    made = requests.post(
        f"{m.origin}/api/routing/profiles",
        json={
            "name": "fastest, hedged",
            "strategy": "custom",
            "weights": weights,
            "hedge": {"enabled": True, "after_ms": HEDGE_AFTER_MS},
        },
        headers=m.buyer,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    key = requests.post(
        f"{m.origin}/api/keys", json={"routing_profile_id": made.json()["id"]}, headers=m.buyer, timeout=10
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def _attempts(origin: str, key: str) -> list[tuple[str, str]]:
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.parse().choices[0].message.content == "Echo: Hello"
    receipt = requests.get(
        f"{origin}/v1/generation",
        params={"id": raw.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()["data"]
    return [(a["listing_id"], a["status"]) for a in receipt["attempts"]]


def test_a_listing_hedged_around_loses_its_rank_to_the_one_that_answers(
    market: tuple[HealthMarket, list[str], DemoSeller],
) -> None:
    m, origins, _ = market
    key = _latency_key(m)
    # Fast at first: CHEAP (probed fast) is the latency profile's first choice on every instance.
    for origin in origins:
        assert _attempts(origin, key) == [(m.cheap, "ok")]

    m.cheap_seller.config.first_token_delay_s = 1.5
    seen: dict[str, list[list[tuple[str, str]]]] = {origin: [] for origin in origins}
    turn = cycle(origins)
    for _ in range(REQUESTS_PER_INSTANCE * len(origins)):
        origin = next(turn)
        seen[origin].append(_attempts(origin, key))
    hedged = [(m.cheap, "cancelled"), (m.pricey, "ok")]
    for origin, runs in seen.items():
        # The first slow request is hedged on every instance (CHEAP still looked fastest) ...
        assert runs[0] == hedged, (origin, runs)
        # ... and within a few, CHEAP's estimate has passed PRICEY's: the rest go to PRICEY, unhedged.
        assert runs[-4:] == [[(m.pricey, "ok")]] * 4, (origin, runs)
    m.assert_books_clean()
