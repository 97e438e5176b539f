"""Routing weights and quality decide the choice, end to end: the real `openai` SDK against a running
`dragonfly serve` with two fake sellers of one model — CHEAP (slow to first token) and FAST (more
expensive) — on SQLite and on PostgreSQL + Redis. Which listing served is read from the receipt.

* a buyer's custom price-only profile picks CHEAP, a latency-only one picks FAST;
* the operator's weights for `balanced` (PUT /api/admin/routing/weights) change what a balanced profile
  picks;
* `quality_first` follows the listings' quality (the operator's override makes them differ).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database

MODEL = "demo/echo-1"
BUYER = ("buyer@e2e.test", "buyer-password-1")
OPERATOR = ("ops@e2e.test", "operator-password-1")
SLOW_FIRST_TOKEN_S = 0.3
PRICE_ONLY = {"price": 1}
LATENCY_ONLY = {"latency": 1}


@dataclass
class TwoSellers:
    origin: str
    cheap: str  # listing ids
    fast: str
    buyer_key: str  # bound to the account's default profile (`balanced`)
    session: dict[str, str]  # the buyer's dashboard session

    def served_by(self, key: str) -> str:
        """One chat request through the SDK; the listing that answered it, from the receipt."""
        client = OpenAI(base_url=f"{self.origin}/v1", api_key=key, max_retries=0, timeout=30)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "Which seller?"}]
        )
        assert raw.parse().choices[0].message.content
        got = requests.get(
            f"{self.origin}/v1/generation",
            params={"id": raw.headers["x-request-id"]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert got.status_code == 200, got.text
        return str(got.json()["data"]["listing_id"])

    def api(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
        resp = requests.request(method, f"{self.origin}{path}", json=body, headers=headers, timeout=10)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def key_for(self, profile: dict[str, Any]) -> str:
        """A buyer key bound to a new profile (created through the API, public port)."""
        created = self.api("POST", "/api/routing/profiles", self.session, {"name": "p", **profile})
        return str(self.api("POST", "/api/keys", self.session, {"routing_profile_id": created["id"]})["key"])


def _login(origin: str, email: str, password: str) -> dict[str, str]:
    r = requests.post(f"{origin}/api/auth/login", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _make_operator(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        await create_account(db, email=OPERATOR[0], password=OPERATOR[1], verified=True, roles=["operator"])
    finally:
        await db.close()


@pytest.fixture
def two_sellers(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> TwoSellers:
    settings = market_settings(database_url, tmp_path / "data")
    slow = demo_seller_factory(first_token_delay_s=SLOW_FIRST_TOKEN_S)
    quick = demo_seller_factory()
    _, cheap = asyncio.run(
        seed_listing(settings, slow, seller_email="cheap@e2e.test", input_price="1.00", output_price="1.00")
    )
    _, fast = asyncio.run(
        seed_listing(settings, quick, seller_email="fast@e2e.test", input_price="1.50", output_price="1.50")
    )
    _, key = asyncio.run(seed_buyer(settings, credit_cents=500, email=BUYER[0]))
    asyncio.run(_make_operator(settings.database_url))
    env = {}
    if database_url.startswith("postgresql"):
        env["DRAGONFLY_REDIS_URL"] = str(request.getfixturevalue("fresh_redis_url"))
    origin = start_serve(processes, settings, extra_env=env)
    return TwoSellers(origin, cheap, fast, key, _login(origin, *BUYER))


def _warm_up(m: TwoSellers) -> tuple[str, str]:
    """Latency samples on both listings: a price-only profile sends every request to CHEAP; a
    latency-only one has no sample for FAST yet (a neutral prior: a near-tie, a seeded draw) until it
    first lands there, and from then on always prefers it. Returns the two profiles' keys."""
    price_key, latency_key = (
        m.key_for({"strategy": "custom", "weights": PRICE_ONLY}),
        m.key_for({"strategy": "custom", "weights": LATENCY_ONLY}),
    )
    assert [m.served_by(price_key) for _ in range(3)] == [m.cheap] * 3
    for _ in range(30):
        if m.served_by(latency_key) == m.fast:
            break
    else:
        raise AssertionError("the latency-only profile never tried the fast listing")
    return price_key, latency_key


def _eventually_served(m: TwoSellers, key: str, listing: str, timeout_s: float = 5.0) -> None:
    """The data plane applies a control-plane change at its next snapshot load (well within a second)."""
    deadline = time.monotonic() + timeout_s
    while m.served_by(key) != listing:
        assert time.monotonic() < deadline, "the change did not reach the data plane"
        time.sleep(0.1)


def test_custom_weights_pick_the_cheap_or_the_fast_listing(two_sellers: TwoSellers) -> None:
    m = two_sellers
    price_key, latency_key = _warm_up(m)
    assert [m.served_by(latency_key) for _ in range(5)] == [m.fast] * 5
    assert [m.served_by(price_key) for _ in range(5)] == [m.cheap] * 5


def test_operator_weights_steer_the_balanced_strategy(two_sellers: TwoSellers) -> None:
    m = two_sellers
    _warm_up(m)
    # Default balanced weights (price 0.30, latency 0.20, ...): FAST is 1.5x the price but ~100x quicker.
    assert [m.served_by(m.buyer_key) for _ in range(3)] == [m.fast] * 3
    operator = _login(m.origin, *OPERATOR)
    weights = m.api("PUT", "/api/admin/routing/weights", operator, {"balanced": PRICE_ONLY})
    assert weights["balanced"] == {"price": 1, "latency": 0, "throughput": 0, "reliability": 0, "quality": 0}
    _eventually_served(m, m.buyer_key, m.cheap)
    assert [m.served_by(m.buyer_key) for _ in range(5)] == [m.cheap] * 5
    # Back to the native defaults: balanced prefers FAST again.
    m.api("PUT", "/api/admin/routing/weights", operator, {"balanced": None})
    _eventually_served(m, m.buyer_key, m.fast)


def test_quality_first_follows_listing_quality(two_sellers: TwoSellers) -> None:
    m = two_sellers
    _warm_up(m)
    quality_key = m.key_for({"strategy": "quality_first"})
    operator = _login(m.origin, *OPERATOR)

    def quality(listing: str, value: float | None) -> None:
        got = m.api("PUT", f"/api/admin/listings/{listing}/quality", operator, {"quality": value})
        assert got["quality_override"] == value

    # Equal quality (both passed their probe and every request): FAST wins on latency.
    assert [m.served_by(quality_key) for _ in range(3)] == [m.fast] * 3
    quality(m.cheap, 1.0)
    quality(m.fast, 0.0)
    _eventually_served(m, quality_key, m.cheap)
    assert [m.served_by(quality_key) for _ in range(5)] == [m.cheap] * 5
    quality(m.cheap, 0.0)
    quality(m.fast, 1.0)
    _eventually_served(m, quality_key, m.fast)
    assert [m.served_by(quality_key) for _ in range(5)] == [m.fast] * 5
