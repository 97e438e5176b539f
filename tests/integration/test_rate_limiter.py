"""The abuse limits' counter (storage/state/limits.py) behaves the same in process and in Redis: a window
counts to its limit and refuses until it closes, `check` counts nothing, concurrent takes never pass the
limit, and Redis out of reach degrades to counting in process instead of failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
from support.ports import free_port

from dragonfly.storage.state.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    made: RateLimiter
    if request.param == "memory":
        made = MemoryRateLimiter()
    else:
        made = RedisRateLimiter(request.getfixturevalue("fresh_redis_url"))
    yield made
    await made.close()


async def test_counts_to_the_limit_and_refuses_until_the_window_closes(limiter: RateLimiter) -> None:
    assert (await limiter.check("df:rl:t:a", 2, 400)).allowed
    first = await limiter.take("df:rl:t:a", 2, 400)
    assert first.allowed and 0 < first.retry_after_ms <= 400
    assert (await limiter.take("df:rl:t:a", 2, 400)).allowed
    refused = await limiter.take("df:rl:t:a", 2, 400)
    assert not refused.allowed and 0 < refused.retry_after_ms <= 400 and refused.retry_after_s == 1
    assert not (await limiter.check("df:rl:t:a", 2, 400)).allowed
    assert (await limiter.take("df:rl:t:b", 2, 400)).allowed  # another key, another window
    await asyncio.sleep(0.45)
    assert (await limiter.take("df:rl:t:a", 2, 400)).allowed


async def test_check_counts_nothing_and_clear_forgets(limiter: RateLimiter) -> None:
    for _ in range(5):
        assert (await limiter.check("df:rl:t:c", 1, 60_000)).allowed
    assert (await limiter.take("df:rl:t:c", 1, 60_000)).allowed
    assert not (await limiter.take("df:rl:t:c", 1, 60_000)).allowed
    await limiter.clear("df:rl:t:c")
    assert (await limiter.take("df:rl:t:c", 1, 60_000)).allowed


async def test_concurrent_takes_never_pass_the_limit(limiter: RateLimiter) -> None:
    verdicts = await asyncio.gather(*(limiter.take("df:rl:t:d", 7, 60_000) for _ in range(50)))
    assert sum(v.allowed for v in verdicts) == 7


@pytest.mark.redis
async def test_redis_windows_expire_by_themselves_and_are_shared(fresh_redis_url: str) -> None:
    one, two = RedisRateLimiter(fresh_redis_url), RedisRateLimiter(fresh_redis_url)
    try:
        assert (await one.take("df:rl:t:e", 2, 60_000)).allowed
        assert (await two.take("df:rl:t:e", 2, 60_000)).allowed
        assert not (await one.take("df:rl:t:e", 2, 60_000)).allowed
        assert not (await two.check("df:rl:t:e", 2, 60_000)).allowed
        client = redis.Redis.from_url(fresh_redis_url)
        assert 59_000 < int(client.pttl("df:rl:t:e")) <= 60_000
        client.close()
    finally:
        await one.close()
        await two.close()


async def test_redis_out_of_reach_counts_in_process() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert (await limiter.take("df:rl:t:f", 1, 60_000)).allowed
        assert not (await limiter.take("df:rl:t:f", 1, 60_000)).allowed
        await limiter.clear("df:rl:t:f")
        assert (await limiter.check("df:rl:t:f", 1, 60_000)).allowed
    finally:
        await limiter.close()
