"""A market of one model with two fake sellers for the listing-health tests: CHEAP (the cost_first
choice) and PRICEY (twice the price), both honest at admission; a buyer key bound to a cost_first
profile; the sellers' and an operator's sessions; helpers that read receipts, contracts and checks
through the public port, and the books."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests
from openai import APIStatusError, OpenAI

from dragonfly.config import Settings
from dragonfly.demo.seller import DemoSeller
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database
from support.market import SECRET, login, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

MODEL = "demo/echo-1"
SELLER_PASSWORD = "seller-password-1"
OPERATOR = ("ops@e2e.test", "operator-password-1")


@dataclass
class Attempted:
    status: int  # the buyer's HTTP status
    first: str  # the listing of the first attempt
    served_by: str | None


@dataclass
class HealthMarket:
    origin: str
    database_url: str
    redis_url: str | None
    cheap_seller: DemoSeller
    cheap: str  # listing ids
    pricey: str
    cost_first_key: str
    buyer: dict[str, str]  # sessions (Authorization headers)
    cheap_owner: dict[str, str]
    pricey_owner: dict[str, str]

    def chat(self, origin: str | None = None, **extra: Any) -> Attempted:
        """One chat request through the `openai` SDK; what its receipt says."""
        client = OpenAI(base_url=f"{origin or self.origin}/v1", api_key=self.cost_first_key, max_retries=0)
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "Hello"}], extra_body=extra or None
            )
            raw.parse()
            status, request_id = 200, raw.headers["x-request-id"]
        except APIStatusError as exc:
            status, request_id = exc.status_code, exc.response.headers["x-request-id"]
        receipt = requests.get(
            f"{origin or self.origin}/v1/generation",
            params={"id": request_id},
            headers={"Authorization": f"Bearer {self.cost_first_key}"},
            timeout=10,
        ).json()["data"]
        attempts = [a for a in receipt["attempts"] if a["status"] != "refused"]
        return Attempted(status, attempts[0]["listing_id"] if attempts else "", receipt["listing_id"])

    def only_cheap(self, origin: str | None = None) -> Attempted:
        """A request whose override leaves only CHEAP (PRICEY is above its output price ceiling)."""
        return self.chat(origin, dragonfly={"max_output_price_per_mtok": "0.75"})

    def call(self, method: str, path: str, who: dict[str, str], body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.origin}{path}", json=body, headers=who, timeout=60)

    def contract(self, listing: str | None = None) -> dict[str, Any]:
        r = self.call("GET", f"/v1/market/listings/{listing or self.cheap}/contracts", self.cheap_owner)
        assert r.status_code == 200, r.text
        return dict(r.json()["data"][0])

    def checks(self) -> list[dict[str, Any]]:
        r = self.call("GET", f"/v1/market/contracts/{self.contract()['id']}/checks", self.cheap_owner)
        assert r.status_code == 200, r.text
        return [c for c in r.json()["data"] if c["kind"].startswith("health:")]

    def wait_for(self, status: str, within_s: float, between: Callable[[], object] | None = None) -> float:
        """Seconds until CHEAP's contract is `status` (calling `between` in each round), failing after
        `within_s`."""
        started = time.monotonic()
        while self.contract()["status"] != status:
            assert time.monotonic() - started < within_s, f"not {status} within {within_s} s"
            if between is not None:
                between()
            else:
                time.sleep(0.1)
        return time.monotonic() - started

    def assert_books_clean(self) -> None:
        """`dragonfly admin check-ledger` passes and the buyer has nothing held."""
        env = {**os.environ, "DRAGONFLY_DATABASE_URL": self.database_url, "DRAGONFLY_SECRET_KEY": SECRET}
        if self.redis_url:
            env["DRAGONFLY_REDIS_URL"] = self.redis_url
        done = subprocess.run(
            [sys.executable, "-m", "dragonfly.cli", "admin", "check-ledger"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        balance = self.call("GET", "/api/billing/balance", self.buyer).json()
        assert Decimal(balance["held_usd"]) == 0, balance


async def _make_operator(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        await create_account(db, email=OPERATOR[0], password=OPERATOR[1], verified=True, roles=["operator"])
    finally:
        await db.close()


def seed_two_sellers(settings: Any, cheap: DemoSeller, pricey: DemoSeller) -> tuple[str, str]:
    _, cheap_id = asyncio.run(
        seed_listing(settings, cheap, seller_email="cheap@e2e.test", input_price="0.50", output_price="0.50")
    )
    _, pricey_id = asyncio.run(
        seed_listing(
            settings, pricey, seller_email="pricey@e2e.test", input_price="1.00", output_price="1.00"
        )
    )
    asyncio.run(seed_buyer(settings, credit_cents=500))
    asyncio.run(_make_operator(settings.database_url))
    return cheap_id, pricey_id


def start_gateways(
    request: pytest.FixtureRequest, database_url: str, processes: ProcessGroup, settings: Settings
) -> tuple[list[str], str | None]:
    """The market's `dragonfly serve` instances and their Redis: one on SQLite; two on PostgreSQL, sharing
    one fresh Redis (requests alternate between them)."""
    if not database_url.startswith("postgresql"):
        return [start_serve(processes, settings)], None
    redis_url = str(request.getfixturevalue("fresh_redis_url"))
    env = {"DRAGONFLY_REDIS_URL": redis_url}
    return [start_serve(processes, settings, extra_env=env) for _ in range(2)], redis_url


def open_market(
    origin: str, settings: Any, redis_url: str | None, cheap: DemoSeller, ids: tuple[str, str]
) -> HealthMarket:
    buyer = login(origin)
    profile = requests.post(
        f"{origin}/api/routing/profiles", json={"name": "cheapest", "strategy": "cost_first"}, headers=buyer
    )
    assert profile.status_code == 201, profile.text
    key = requests.post(
        f"{origin}/api/keys", json={"routing_profile_id": profile.json()["id"]}, headers=buyer
    )
    assert key.status_code == 201, key.text
    return HealthMarket(
        origin=origin,
        database_url=settings.database_url,
        redis_url=redis_url,
        cheap_seller=cheap,
        cheap=ids[0],
        pricey=ids[1],
        cost_first_key=key.json()["key"],
        buyer=buyer,
        cheap_owner=login(origin, "cheap@e2e.test", SELLER_PASSWORD),
        pricey_owner=login(origin, "pricey@e2e.test", SELLER_PASSWORD),
    )


def operator(origin: str) -> dict[str, str]:
    return login(origin, *OPERATOR)
