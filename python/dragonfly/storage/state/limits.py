"""Counters for the abuse limits of the account surface (services/abuse.py).

Each limit is a fixed window per key that opens at the key's first counted event and lasts the window
(`INCR` + `PEXPIRE` in Redis): at most `limit` events are counted in it, and a refusal says how long until
it closes (`retry-after`). `take` counts one event when the window has room; `check` asks without
counting; `clear` forgets the key (a successful login clears its email's failures).

- `MemoryRateLimiter`: one process (the embedded default's single control plane). Every call runs without
  an `await`, so it is atomic on the event loop; a lock keeps it so should Robyn call from several threads.
- `RedisRateLimiter`: shared by every control plane through Redis, one Lua script per call
  (`lua/limit.lua`). When Redis cannot be reached it counts in process (each instance then holds the limits
  on its own) and logs it once: an abuse limit degrades, it does not refuse every login nor lift every
  limit. Money never takes this path (storage/state/redis.py fails closed).

Keys are `df:rl:<rule>:<subject>`; they expire with their window, so Redis holds only live windows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Protocol

from dragonfly.config import Settings
from dragonfly.record import record
from dragonfly.storage.state.resp import RespClient, RespUnavailable, Script

log = logging.getLogger("dragonfly.state.limits")

UNAVAILABLE: tuple[type[BaseException], ...] = (RespUnavailable, OSError, TimeoutError)
# Live windows the in-process counter keeps; past this the expired ones are dropped, then the oldest.
MAX_KEYS = 100_000


@record
class Verdict:
    allowed: bool
    retry_after_ms: int = 0  # refused: until the window closes; allowed: what is left of it (0: none open)

    @property
    def retry_after_s(self) -> int:
        return max(1, -(-self.retry_after_ms // 1000))


class RateLimiter(Protocol):
    async def take(self, key: str, limit: int, window_ms: int) -> Verdict:
        """Count one event when fewer than `limit` are counted in the key's window (opening one if none
        is open); refuse otherwise, counting nothing."""
        ...

    async def check(self, key: str, limit: int, window_ms: int) -> Verdict:
        """Would `take` count? Counts nothing."""
        ...

    async def clear(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, list[int]] = {}  # key -> [count, window end (ms on the clock)]
        self._lock = threading.Lock()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, key: str, now: int) -> list[int] | None:
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window

    def decide(self, key: str, limit: int, window_ms: int, count: bool) -> Verdict:
        with self._lock:
            now = self._now_ms()
            window = self._live(key, now)
            if window is not None and window[0] >= limit:
                return Verdict(False, window[1] - now)
            if not count:
                return Verdict(True, window[1] - now if window else 0)
            if window is None:
                self._make_room(now)
                window = self._windows[key] = [0, now + window_ms]
            window[0] += 1
            return Verdict(True, window[1] - now)

    def _make_room(self, now: int) -> None:
        if len(self._windows) < self._max_keys:
            return
        for key in [k for k, (_, end) in self._windows.items() if end <= now]:
            del self._windows[key]
        while len(self._windows) >= self._max_keys:  # insertion order: the oldest windows go first
            del self._windows[next(iter(self._windows))]

    async def take(self, key: str, limit: int, window_ms: int) -> Verdict:
        return self.decide(key, limit, window_ms, count=True)

    async def check(self, key: str, limit: int, window_ms: int) -> Verdict:
        return self.decide(key, limit, window_ms, count=False)

    async def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    async def close(self) -> None:
        return None


def _lua(name: str) -> str:
    return (resources.files("dragonfly.storage.state") / "lua" / name).read_text(encoding="utf-8")


class RedisRateLimiter:
    def __init__(self, url: str, *, connect_timeout_s: float = 0.25, op_timeout_s: float = 1.0) -> None:
        self._redis = RespClient(url, connect_timeout_s=connect_timeout_s, op_timeout_s=op_timeout_s)
        self._script = Script(self._redis, _lua("limit.lua"))
        self._local = MemoryRateLimiter()
        self._degraded = False

    async def _run(self, key: str, limit: int, window_ms: int, mode: str) -> Verdict:
        try:
            allowed, ms = await self._script(keys=[key], args=[limit, window_ms, mode])
        except UNAVAILABLE as exc:
            if not self._degraded:
                log.warning("abuse limits: Redis unreachable, counting in process: %s", type(exc).__name__)
                self._degraded = True
            return self._local.decide(key, limit, window_ms, count=mode == "take")
        if self._degraded:
            log.warning("abuse limits: Redis reachable again, counting there")
            self._degraded = False
        return Verdict(bool(allowed), int(ms))

    async def take(self, key: str, limit: int, window_ms: int) -> Verdict:
        return await self._run(key, limit, window_ms, "take")

    async def check(self, key: str, limit: int, window_ms: int) -> Verdict:
        return await self._run(key, limit, window_ms, "check")

    async def clear(self, key: str) -> None:
        await self._local.clear(key)
        try:
            await self._redis.execute("DEL", key)
        except UNAVAILABLE:
            pass  # the window closes by itself

    async def close(self) -> None:
        await self._redis.close()


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Shared through Redis when configured; in process otherwise (the embedded default)."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return MemoryRateLimiter()
