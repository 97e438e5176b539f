"""Kill the data plane (os._exit, like kill -9) at every point of a trade, restart it, and check the
books: no double charge, no stuck hold, no lost completed trade (ARCHITECTURE.md, Invariants). On PostgreSQL
+ Redis the
trade's durable point is the database commit; on the embedded default it is the settlement log, which
the restarted worker commits before it serves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import requests
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.domain.ledger import buyer_cash
from dragonfly.gateway.failpoints import POINTS
from dragonfly.services.ledger_check import check_ledger
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.state.redis import RedisStateStore

LEASE_S = 2.0


async def _books(
    db_url: str, redis_url: str | None, buyer_id: str
) -> tuple[list[object], list[dict], int, int | None]:
    db = await open_database(db_url)
    store = RedisStateStore(redis_url) if redis_url else None
    try:
        violations = await check_ledger(db, store)
        trades = await db.fetch_all(
            "SELECT id, status, cost_micros FROM trades WHERE buyer_account_id = $1 ORDER BY created_at",
            buyer_id,
        )
        balance = await ledger.balance(db, buyer_cash(buyer_id))
        available = None
        if store is not None:
            view = await store.account_view(buyer_id)
            available = view.available_micros if view is not None else -1
        return list(violations), trades, balance, available
    finally:
        if store is not None:
            await store.close()
        await db.close()


def _chat(origin: str, key: str) -> requests.Response:
    return requests.post(
        f"{origin}/v1/chat/completions",
        json={
            "model": "demo/echo-1",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "max_tokens": 50,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


@pytest.mark.parametrize("backend", ["pg-redis", "embedded"])
@pytest.mark.parametrize("point", POINTS)
def test_crash_at_any_point_leaves_consistent_books(
    point: str,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory,
) -> None:
    data = tmp_path / "data"
    if backend == "pg-redis":
        db_url, redis_url = (
            request.getfixturevalue("pg_database_url"),
            request.getfixturevalue("fresh_redis_url"),
        )
    else:
        data.mkdir()
        db_url, redis_url = f"sqlite:///{data / 'dragonfly.db'}", None
    settings = market_settings(db_url, data)
    seller = demo_seller_factory(chunk_delay_s=0.01)
    asyncio.run(seed_listing(settings, seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    env = {"DRAGONFLY_HOLD_LEASE_S": str(LEASE_S)}
    if redis_url:
        env["DRAGONFLY_REDIS_URL"] = redis_url

    origin = start_serve(processes, settings, extra_env={**env, "DRAGONFLY_FAILPOINT": point})
    crashing = processes.started[-1]
    try:
        _chat(origin, key)  # the gateway dies somewhere inside this trade
    except requests.RequestException:
        pass
    assert crashing.proc.wait(timeout=30) != 0, crashing.describe()

    origin = start_serve(processes, settings, extra_env=env)
    time.sleep(LEASE_S + 0.5)  # the crashed instance's hold and lease lapse
    after = _chat(origin, key)
    assert after.status_code == 200, after.text
    assert b"data: [DONE]" in after.content
    time.sleep(2.5)  # one re-seed period: the state store agrees with the database again

    violations, trades, balance, available = asyncio.run(_books(settings.database_url, redis_url, buyer_id))
    assert violations == []
    charged = [t for t in trades if t["cost_micros"] > 0]
    # Only a trade committed before the crash is billed, once; the follow-up request is billed once.
    assert len(charged) == (2 if point in ("after_commit", "after_response") else 1), trades
    assert len({t["id"] for t in trades}) == len(trades)
    assert balance == 1_000_000 - sum(t["cost_micros"] for t in charged)
    if available is not None:  # the embedded store died with the process; Redis outlives it
        assert available == balance, "a hold or pending charge is stuck in the state store"
