"""Trade reviews with consequences, end to end: `dragonfly serve` as a subprocess (SQLite, and PostgreSQL with
Redis), the real openai SDK, and a fake seller that is honest through its admission probe and then
over-reports — 3x every count, then 3x the prompt alone with 20 cached tokens it never cached. The buyer
is billed within the slack of the honest amount; every such trade is a review in the seller's queue and
the operator's list; the release worker (every 0.3 s, no lock window) releases the honest trades around
them but not what the reviews hold; the operator upholds (the buyer is refunded the excess) and
dismisses (the seller's share is released at once); the seller is paid out; and `dragonfly admin
check-ledger` passes at every step."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI
from support.market import SECRET, Market, login, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.billing import allowance
from dragonfly.domain.money import usd
from dragonfly.native.tokens import TokenCounter
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database

# One o200k_base token per word, so the demo seller's counts follow Dragonfly's (test_usage_billing.py):
# honestly it reports 4 prompt and 1 completion token fewer than Dragonfly counts.
TEXT = (
    "the market is open and every seller who reports more tokens than it served is paid only for what "
    "the gateway counted plus a small slack so the buyer pays what the honest seller would have asked"
)
IN, OUT, CACHED = 10, 30, 5  # µUSD a token: "10.00" / "30.00" / "5.00" USD per 1M tokens
RESERVE_BPS = 500  # the default share of a seller's payout booked to the reserve
CLAIMED_CACHE = 20
OPS = ("ops@e2e.test", "operator-password-1")


class Books:
    def __init__(self, market: Market, redis_url: str | None, seller: DemoSeller) -> None:
        self.m = market
        self.redis_url = redis_url
        self.seller = seller
        self.client = OpenAI(base_url=market.base_url, api_key=market.buyer_key, max_retries=0, timeout=30)
        self.seller_auth = login(market.origin, "seller@e2e.test", "seller-password-1")
        self.buyer_auth = login(market.origin)
        self.ops_auth = login(market.origin, *OPS)

    def call(self, auth: dict[str, str], method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.m.origin}{path}", headers=auth, timeout=30, **kw)

    def chat(self, stream: bool = False) -> dict[str, Any]:
        """One trade through the SDK; its receipt."""
        messages: Any = [{"role": "user", "content": TEXT}]
        if stream:
            raw = self.client.chat.completions.with_raw_response.create(
                model="demo/echo-1", messages=messages, stream=True, stream_options={"include_usage": True}
            )
            assert list(raw.parse())[-1].usage is not None
        else:
            raw = self.client.chat.completions.with_raw_response.create(
                model="demo/echo-1", messages=messages
            )
            assert raw.parse().choices[0].message.content == "Echo: " + TEXT
        r = requests.get(
            f"{self.m.base_url}/generation",
            params={"id": raw.headers["x-request-id"]},
            headers={"Authorization": f"Bearer {self.m.buyer_key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def earnings(self) -> dict[str, int]:
        body = self.call(self.seller_auth, "GET", "/v1/market/earnings").json()
        return {k.removesuffix("_usd"): micros(v) for k, v in body.items()}

    def buyer_balance(self) -> int:
        return micros(self.call(self.buyer_auth, "GET", "/api/billing/balance").json()["balance_usd"])

    def reviews(self, **params: str) -> dict[str, dict[str, Any]]:
        body = self.call(self.seller_auth, "GET", "/v1/market/trade-reviews", params=params).json()
        return {r["trade_id"]: r for r in body["data"]}

    def resolve(self, trade_id: str, action: str) -> requests.Response:
        path = f"/api/admin/flagged-trades/{trade_id}/resolve"
        return self.call(self.ops_auth, "POST", path, json={"action": action, "note": f"e2e {action}"})

    def check_ledger(self) -> None:
        env = {
            **os.environ,
            "DRAGONFLY_DATABASE_URL": self.m.settings.database_url,
            "DRAGONFLY_DATA_DIR": self.m.settings.data_dir,
            "DRAGONFLY_SECRET_KEY": SECRET,
        }
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

    def wait_for_available(self, want: int, timeout_s: float = 20) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.earnings()
            if view["available"] == want or time.monotonic() > deadline:
                assert view["available"] == want, (view, want)
                return view
            time.sleep(0.1)


def micros(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


def locked_part(receipt: dict[str, Any]) -> int:
    """The trade's credit to the seller's locked earnings: its share less the reserve share."""
    share = micros(receipt["seller_payout_usd"])
    return share - share * RESERVE_BPS // 10_000


async def _create_operator(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        await create_account(db, email=OPS[0], password=OPS[1], verified=True, roles=["operator"])
    finally:
        await db.close()


@pytest.fixture
def books(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    demo_seller: DemoSeller,
    processes: ProcessGroup,
) -> Iterator[Books]:
    settings = market_settings(database_url, tmp_path / "data")
    seller_id, listing_id = asyncio.run(
        seed_listing(
            settings,
            demo_seller,
            input_price="10.00",
            output_price="30.00",
            cached_input_price="5.00",
            encoding="o200k_base",
        )
    )
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=500))
    asyncio.run(_create_operator(database_url))
    env = {"DRAGONFLY_EARNINGS_LOCK_S": "0", "DRAGONFLY_SETTLEMENT_PERIOD_S": "0.3"}
    redis_url = None
    if database_url.startswith("postgresql"):
        redis_url = str(request.getfixturevalue("fresh_redis_url"))
        env["DRAGONFLY_REDIS_URL"] = redis_url
    origin = start_serve(processes, settings, extra_env=env)
    market = Market(f"{origin}/v1", origin, key, buyer_id, seller_id, listing_id, settings)
    yield Books(market, redis_url, demo_seller)


def test_over_reported_trades_are_held_until_resolved_and_each_resolution_balances(books: Books) -> None:
    counter = TokenCounter("o200k_base")
    prompt_counted = counter.count(TEXT) + 7  # 3 + role + text + 3 (the chat accounting)
    completion_counted = counter.count("Echo: " + TEXT)
    knobs = books.seller.config

    honest = books.chat()
    assert honest["usage_audit"] == "ok"
    honest_cost = micros(honest["total_cost_usd"])

    # 3x every count, after admission: billed the count + slack, within the slack of the honest bill.
    knobs.usage_multiplier = 3
    inflated = [books.chat(), books.chat(stream=True)]
    for t in inflated:
        assert t["usage_audit"] == "flagged"
        assert (t["native_tokens_prompt"], t["native_tokens_completion"]) == (
            3 * honest["native_tokens_prompt"],
            3 * honest["native_tokens_completion"],
        )
        assert (t["tokens_prompt"], t["tokens_completion"]) == (
            allowance(prompt_counted),
            allowance(completion_counted),
        )
        cost = micros(t["total_cost_usd"])
        assert cost == allowance(prompt_counted) * IN + allowance(completion_counted) * OUT
        slack = (allowance(prompt_counted) - honest["tokens_prompt"]) * IN
        slack += (allowance(completion_counted) - honest["tokens_completion"]) * OUT
        assert cost == honest_cost + slack and cost < honest_cost * 1.2

    # 3x the prompt alone, and a cache it never had: the prompt is capped, the claimed cache only lowers
    # the bill (a cached price is never above the input price).
    knobs.update(
        {"usage_multiplier": 1, "prompt_usage_multiplier": 3, "reported_cached_tokens": CLAIMED_CACHE}
    )
    cached = books.chat()
    assert cached["usage_audit"] == "flagged"
    assert cached["native_tokens_prompt"] == 3 * honest["native_tokens_prompt"]
    assert (cached["tokens_prompt"], cached["tokens_cached"]) == (allowance(prompt_counted), CLAIMED_CACHE)
    assert cached["tokens_completion"] == honest["tokens_completion"]
    cached_cost = micros(cached["total_cost_usd"])
    uncached = allowance(prompt_counted) - CLAIMED_CACHE
    assert cached_cost == uncached * IN + CLAIMED_CACHE * CACHED + honest["tokens_completion"] * OUT
    assert cached_cost <= honest_cost + (allowance(prompt_counted) - honest["tokens_prompt"]) * IN

    # Honest again. Once the worker has released this later trade, it has passed over the flagged ones.
    knobs.update({"prompt_usage_multiplier": None, "reported_cached_tokens": 0})
    later = books.chat()
    assert later["usage_audit"] == "ok"
    flagged = [*inflated, cached]
    view = books.wait_for_available(locked_part(honest) + locked_part(later))
    time.sleep(1)  # three more passes
    view = books.wait_for_available(locked_part(honest) + locked_part(later), timeout_s=0)
    assert view["held"] == sum(micros(t["seller_payout_usd"]) for t in flagged)
    assert view["locked"] == 0

    # Each is an open review, with the excess priced at Dragonfly's counts.
    queue = books.reviews(state="open")
    assert set(queue) == {t["id"] for t in flagged}
    honest_at_counts = prompt_counted * IN + completion_counted * OUT
    want_excess = {
        inflated[0]["id"]: micros(inflated[0]["total_cost_usd"]) - honest_at_counts,
        inflated[1]["id"]: micros(inflated[1]["total_cost_usd"]) - honest_at_counts,
        # Its completion was reported honestly (below the count): only the prompt's slack is excess.
        cached["id"]: (allowance(prompt_counted) - prompt_counted) * IN,
    }
    assert {k: micros(r["review"]["excess_usd"]) for k, r in queue.items()} == want_excess
    assert all(v > 0 for v in want_excess.values())
    ops = books.call(books.ops_auth, "GET", "/api/admin/flagged-trades", params={"state": "open"}).json()
    assert {t["id"] for t in ops["data"]} == set(queue)
    books.check_ledger()

    # Uphold the 3x trade: the buyer gets the excess back, the rest of the seller's share is released.
    balance = books.buyer_balance()
    upheld = books.resolve(inflated[0]["id"], "uphold")
    assert upheld.status_code == 200, upheld.text
    assert micros(upheld.json()["review"]["refund_usd"]) == want_excess[inflated[0]["id"]]
    assert books.buyer_balance() == balance + want_excess[inflated[0]["id"]]
    assert books.resolve(inflated[0]["id"], "dismiss").status_code == 409
    books.check_ledger()

    # Dismiss the streamed one: its locked share is released at once.
    available = books.earnings()["available"]
    dismissed = books.resolve(inflated[1]["id"], "dismiss")
    assert dismissed.status_code == 200, dismissed.text
    assert books.earnings()["available"] == available + locked_part(inflated[1])
    books.check_ledger()

    # Uphold the cache-claiming one too.
    assert books.resolve(cached["id"], "uphold").status_code == 200
    books.check_ledger()

    states = {k: r["review"]["state"] for k, r in books.reviews().items()}
    assert states == {inflated[0]["id"]: "upheld", inflated[1]["id"]: "dismissed", cached["id"]: "upheld"}
    view = books.earnings()
    assert view["held"] == 0 and view["locked"] == 0
    refunded = want_excess[inflated[0]["id"]] + want_excess[cached["id"]]
    shares = sum(micros(t["seller_payout_usd"]) for t in [honest, *flagged, later])
    # The seller's lifetime lost exactly the seller parts of the refunds (the platform gave back its fee).
    assert shares - refunded <= view["lifetime"] < shares

    # Paid out: everything available, marked paid by the operator.
    made = books.call(
        books.seller_auth, "POST", "/v1/market/payouts", json={"amount_usd": usd(view["available"])}
    )
    assert made.status_code == 201, made.text
    paid = books.call(books.ops_auth, "POST", f"/api/admin/payouts/{made.json()['id']}/mark-paid", json={})
    assert paid.status_code == 200, paid.text
    after = books.earnings()
    assert (after["available"], after["payout_pending"], after["paid_out"]) == (0, 0, view["available"])
    books.check_ledger()
