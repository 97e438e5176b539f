"""With Redis configured, /api/billing/balance shows what in-flight requests hold, and releases it."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path

import requests
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup


def test_in_flight_hold_is_visible_then_released(
    pg_database_url: str, fresh_redis_url: str, tmp_path: Path, processes: ProcessGroup, demo_seller_factory
) -> None:
    settings = market_settings(pg_database_url, tmp_path / "data")
    seller = demo_seller_factory(chunk_delay_s=0.1, chunks=30)  # a 3 s stream
    asyncio.run(seed_listing(settings, seller))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(processes, settings, extra_env={"DRAGONFLY_REDIS_URL": fresh_redis_url})
    token = requests.post(
        f"{origin}/api/auth/login",
        json={"email": "buyer@e2e.test", "password": "buyer-password-1"},
        timeout=10,
    ).json()["access_token"]

    def balance() -> dict[str, str]:
        r = requests.get(
            f"{origin}/api/billing/balance", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert r.status_code == 200, r.text
        return r.json()

    idle = balance()
    assert Decimal(idle["held_usd"]) == 0 and idle["available_usd"] == idle["balance_usd"]

    def stream() -> None:
        r = requests.post(
            f"{origin}/v1/chat/completions",
            json={
                "model": "demo/echo-1",
                "messages": [{"role": "user", "content": "x"}],
                "stream": True,
                "max_tokens": 1000,
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 200

    worker = threading.Thread(target=stream)
    worker.start()
    deadline = time.monotonic() + 3
    busy = balance()
    while Decimal(busy["held_usd"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        busy = balance()
    assert Decimal(busy["held_usd"]) > 0
    assert Decimal(busy["available_usd"]) == Decimal(busy["balance_usd"]) - Decimal(busy["held_usd"])
    worker.join(timeout=30)
    done = balance()
    assert Decimal(done["held_usd"]) == 0
    assert Decimal(done["balance_usd"]) < Decimal(idle["balance_usd"])  # the stream was billed
