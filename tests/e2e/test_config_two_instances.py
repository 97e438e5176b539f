"""Two `dragonfly serve` instances on one PostgreSQL and one Redis: a change made through one instance's
API is in effect on the other within 2 s (a new key at once, by read-through; a revocation and a profile
edit by the database's change notification), through the real `openai` SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI
from support.market import login, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

MESSAGES = [{"role": "user", "content": "Hello"}]
WITHIN_S = 2.0


def chat(origin: str, key: str) -> str:
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)
    return (
        client.chat.completions.create(model="demo/echo-1", messages=MESSAGES).choices[0].message.content
        or ""
    )


def until(check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds (polled every 20 ms), failing past WITHIN_S."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < WITHIN_S, "not in effect within 2 s"
        time.sleep(0.02)
    return time.monotonic() - started


def refused(origin: str, key: str, error: type[openai.APIStatusError]) -> bool:
    try:
        chat(origin, key)
    except error:
        return True
    return False


def test_changes_through_one_instance_hold_on_the_other(
    pg_database_url: str,
    fresh_redis_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(pg_database_url, tmp_path / "data")
    asyncio.run(seed_listing(settings, demo_seller_factory()))
    asyncio.run(seed_buyer(settings, credit_cents=500))
    env = {"DRAGONFLY_REDIS_URL": fresh_redis_url}
    a, b = (start_serve(processes, settings, extra_env=env) for _ in range(2))
    session = login(a)

    def api(method: str, path: str, **body: object) -> dict:
        r = requests.request(method, f"{a}{path}", json=body or None, headers=session, timeout=10)
        assert r.status_code < 300, r.text
        return r.json() if r.content else {}

    # Created through A, used on B on the very next request (B looks the unknown key up once).
    created = api("POST", "/api/keys", name="cross")
    assert chat(b, created["key"]) == "Echo: Hello"

    # A profile edit through A: B routes by it within 2 s.
    deny = api("POST", "/api/routing/profiles", name="deny", strategy="balanced", providers_deny=["custom"])
    api("PATCH", f"/api/keys/{created['id']}", routing_profile_id=deny["id"])
    until(lambda: refused(b, created["key"], openai.InternalServerError))
    api("PATCH", f"/api/routing/profiles/{deny['id']}", providers_deny=[])
    until(lambda: not refused(b, created["key"], openai.InternalServerError))

    # Revoked through A: refused on B within 2 s.
    api("DELETE", f"/api/keys/{created['id']}")
    assert refused(a, created["key"], openai.AuthenticationError)
    until(lambda: refused(b, created["key"], openai.AuthenticationError))
