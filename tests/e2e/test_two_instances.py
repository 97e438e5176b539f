"""Two `dragonfly serve` processes sharing one PostgreSQL database and one Redis: key budgets, account
balances, listing rpm and listing concurrency hold across both, under many concurrent requests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from support.market import market_settings, seed_listing, start_serve
from support.processes import ProcessGroup
from support.redis_server import RedisServer

from dragonfly.config import Settings
from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.ledger import buyer_cash
from dragonfly.domain.money import cents_to_micros, worst_case_hold
from dragonfly.gateway.holds import PROMPT_HOLD_RATIO, PROMPT_HOLD_SLACK
from dragonfly.native.tokens import preparse_request
from dragonfly.security.api_keys import KeyHasher
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.services.keys import create_buyer_key
from dragonfly.services.listings import update_listing
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MODEL = "demo/echo-1"
# Input is free and the seller answers exactly MAX_TOKENS words, so a trade costs exactly its hold: even
# requests admitted after others settled cannot fit more than N into a budget of N holds.
INPUT_PRICE, OUTPUT_PRICE = "0", "2000"  # USD per 1M tokens: 5 tokens = 10_000 micro-USD = 1 cent
MAX_TOKENS = 5
MESSAGES = [{"role": "user", "content": " ".join(f"word{i}" for i in range(20))}]
BODY: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
N = 4


def _hold() -> int:
    pre = preparse_request(orjson.dumps(BODY))
    return worst_case_hold(
        prompt_tokens=int(pre.prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK,
        max_completion_tokens=MAX_TOKENS,
        input_price=0,
        output_price=2_000_000_000,
    )


@dataclass
class Pair:
    settings: Settings
    origins: list[str]
    seller: DemoSeller
    seller_id: str
    listing_id: str


@pytest.fixture
def pair(
    pg_database_url: str,
    fresh_redis_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> Iterator[Pair]:
    settings = market_settings(pg_database_url, tmp_path / "data")
    seller = demo_seller_factory(chunk_delay_s=0.05)
    seller_id, listing_id = asyncio.run(
        seed_listing(settings, seller, input_price=INPUT_PRICE, output_price=OUTPUT_PRICE)
    )
    yield Pair(settings, [], seller, seller_id, listing_id)


def _start(pair: Pair, processes: ProcessGroup, redis_url: str) -> None:
    env = {"DRAGONFLY_REDIS_URL": redis_url}
    pair.origins = [start_serve(processes, pair.settings, read_timeout_s=10, extra_env=env) for _ in range(2)]


async def _buyer(settings: Settings, *, credit_cents: int, budget_cents: int | None) -> tuple[str, str]:
    db = await open_database(settings.database_url)
    try:
        buyer_id = await create_account(
            db, email="buyer@two.test", password="buyer-password-1", verified=True, roles=[]
        )
        await credit_account(db, account_id=buyer_id, amount_micros=cents_to_micros(credit_cents), note="e2e")
        key = await create_buyer_key(
            db, KeyHasher(settings.secret_key), account_id=buyer_id, monthly_budget_cents=budget_cents
        )
        return buyer_id, key["key"]
    finally:
        await db.close()


async def _db_value(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    db = await open_database(settings.database_url)
    try:
        return await fn(db)
    finally:
        await db.close()


def _storm(origins: list[str], key: str, count: int, body: dict[str, Any]) -> list[requests.Response]:
    def one(i: int) -> requests.Response:
        return requests.post(
            f"{origins[i % len(origins)]}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def _codes(responses: list[requests.Response]) -> Counter[str]:
    return Counter(
        "ok" if r.status_code == 200 else f"{r.status_code} {r.json()['error']['code']}" for r in responses
    )


def test_key_budget_holds_across_two_instances(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str
) -> None:
    hold = _hold()
    assert hold == 10_000  # one cent: the budget below fits exactly N holds
    buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=1000, budget_cents=N))
    _start(pair, processes, fresh_redis_url)
    responses = _storm(pair.origins, key, 10 * N, BODY)
    codes = _codes(responses)
    assert 1 <= codes["ok"] <= N, codes
    assert codes["ok"] + codes["429 budget_exceeded"] == 10 * N, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["x-should-retry"] == "false"
    spent = cents_to_micros(1000) - asyncio.run(
        _db_value(pair.settings, lambda db: ledger.balance(db, buyer_cash(buyer_id)))
    )
    assert spent == codes["ok"] * hold <= cents_to_micros(N)


def test_account_balance_holds_across_two_instances(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str
) -> None:
    hold = _hold()
    buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=N, budget_cents=None))
    balance = asyncio.run(_db_value(pair.settings, lambda db: ledger.balance(db, buyer_cash(buyer_id))))
    assert balance == N * hold  # exactly N holds
    _start(pair, processes, fresh_redis_url)
    responses = _storm(pair.origins, key, 10 * N, BODY)
    codes = _codes(responses)
    assert 1 <= codes["ok"] <= N, codes
    assert codes["ok"] + codes["402 insufficient_balance"] == 10 * N, codes
    refused = next(r for r in responses if r.status_code == 402)
    assert refused.headers["x-should-retry"] == "false"
    after = asyncio.run(_db_value(pair.settings, lambda db: ledger.balance(db, buyer_cash(buyer_id))))
    assert after == balance - codes["ok"] * hold >= 0


def test_listing_concurrency_cap_holds_across_two_instances(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str
) -> None:
    asyncio.run(
        _db_value(
            pair.settings,
            lambda db: update_listing(
                db, account_id=pair.seller_id, listing_id=pair.listing_id, fields={"concurrency_cap": 2}
            ),
        )
    )
    _buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=1000, budget_cents=None))
    _start(pair, processes, fresh_redis_url)
    pair.seller.stats.reset()
    body = {**BODY, "max_tokens": 20, "stream": True}  # ~1 s per stream (chunk delay 0.05 s)
    codes = _codes(_storm(pair.origins, key, 16, body))
    assert pair.seller.stats.max_concurrent <= 2, pair.seller.stats.snapshot()
    assert pair.seller.stats.max_concurrent == 2  # both slots were used: the test exercised the cap
    assert codes["ok"] >= 2 and codes["ok"] + codes["429 rate_limited"] == 16, codes


def test_listing_rpm_cap_holds_across_two_instances(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str
) -> None:
    rpm = 5
    asyncio.run(
        _db_value(
            pair.settings,
            lambda db: update_listing(
                db, account_id=pair.seller_id, listing_id=pair.listing_id, fields={"rpm_cap": rpm}
            ),
        )
    )
    _buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=1000, budget_cents=None))
    _start(pair, processes, fresh_redis_url)
    pair.seller.stats.reset()
    responses = _storm(pair.origins, key, 6 * rpm, BODY)
    codes = _codes(responses)
    # One minute window shared by both instances: exactly `rpm` requests reach the seller.
    assert codes["ok"] == rpm, codes
    assert codes["429 rate_limited"] == 5 * rpm, codes
    assert pair.seller.stats.requests == rpm, pair.seller.stats.snapshot()
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 61
    assert refused.headers["x-ratelimit-limit-requests"] == str(rpm)


def test_a_free_listing_trades_across_two_instances(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str
) -> None:
    """A listing priced at 0 holds and charges 0: Redis settles, sweeps and re-seeds zero amounts (its
    scripts once sent Lua's -0, which HINCRBY refuses, so every free trade failed after it was recorded)."""
    free_model = "demo/free-1"
    asyncio.run(
        seed_listing(pair.settings, pair.seller, model=free_model, seller_email="free@two.test",
                     input_price="0", output_price="0")
    )  # fmt: skip
    buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=1, budget_cents=None))
    _start(pair, processes, fresh_redis_url)
    responses = _storm(pair.origins, key, 8, {**BODY, "model": free_model})
    assert _codes(responses) == Counter({"ok": 8}), [r.text for r in responses if r.status_code != 200]
    balance = asyncio.run(_db_value(pair.settings, lambda db: ledger.balance(db, buyer_cash(buyer_id))))
    assert balance == cents_to_micros(1)
    receipt = requests.get(
        f"{pair.origins[0]}/v1/generation",
        params={"id": responses[0].headers["x-request-id"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert receipt.status_code == 200 and float(receipt.json()["data"]["total_cost_usd"]) == 0, receipt.text


def test_redis_down_fails_closed_and_both_instances_recover(
    pair: Pair, processes: ProcessGroup, fresh_redis_url: str, redis_server: RedisServer
) -> None:
    hold = _hold()
    buyer_id, key = asyncio.run(_buyer(pair.settings, credit_cents=N, budget_cents=None))
    _start(pair, processes, fresh_redis_url)
    served = _codes(_storm(pair.origins, key, 2, BODY))
    assert served == {"ok": 2}
    redis_server.stop()
    down = _storm(pair.origins, key, 4, BODY)
    assert _codes(down) == {"503 service_unavailable": 4}
    assert all(int(r.headers["retry-after"]) >= 1 for r in down)
    redis_server.start()  # empty: every instance re-seeds from the database on first touch
    for origin in pair.origins:  # each instance recovers by itself, without a restart
        deadline = time.monotonic() + 10
        while (c := _codes(_storm([origin], key, 1, BODY))) != {"ok": 1}:
            assert c == {"503 service_unavailable": 1} and time.monotonic() < deadline, c
            time.sleep(0.2)
        served["ok"] += 1
    # The balance survived the outage: N holds in all, whatever instance served them.
    assert served["ok"] == 2 + len(pair.origins) == N  # the whole balance is spent now
    final = _codes(_storm(pair.origins, key, 10, BODY))
    assert final == {"402 insufficient_balance": 10}, final
    after = asyncio.run(_db_value(pair.settings, lambda db: ledger.balance(db, buyer_cash(buyer_id))))
    assert after == (N - served["ok"]) * hold == 0
