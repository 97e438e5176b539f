"""The state store's Redis client: CPU per script call in the calling process, `storage.state.resp`
against redis-py's asyncio client (what the store used before, the baseline), same run, same throwaway
Redis server, same script shape as admission (7 keys, 13 arguments), on uvloop like the data plane.

Run: `python -m benchmarks.micro.bench_resp` (needs `redis-server` on PATH; `scripts/ensure-system-deps.sh`
installs it). CPU is `time.process_time()` of this process only: the Redis server's work is the same for
both clients and is not counted.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable

import uvloop
from redis.asyncio import BlockingConnectionPool, Redis

from benchmarks.load import services
from dragonfly.storage.state.resp import RespClient, Script

LUA = "return {1, redis.call('INCR', KEYS[1])}"
KEYS = [f"df:{{a:bench}}:{i}" for i in range(7)]
ARGS = list(range(13))
CALLS = 5000


async def _measure(call: Callable[[], Awaitable[object]], concurrency: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    for _ in range(300):
        await call()
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(CALLS // concurrency) for _ in range(concurrency)))
    n = (CALLS // concurrency) * concurrency
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - t0) / n * 1e6


async def main(url: str) -> None:
    pool = BlockingConnectionPool.from_url(url, max_connections=16)
    rp = Redis.from_pool(pool)
    rp_script = rp.register_script(LUA)
    ours = RespClient(url)
    our_script = Script(ours, LUA)
    print("| callers | redis-py CPU µs | resp CPU µs | redis-py / resp | redis-py wall µs | resp wall µs |")
    print("|---:|---:|---:|---:|---:|---:|")
    for concurrency in (1, 32):
        best: dict[str, tuple[float, float]] = {}
        for _ in range(3):  # interleaved rounds; best of 3
            for name, call in (
                ("redis-py", lambda: rp_script(keys=KEYS, args=ARGS)),
                ("resp", lambda: our_script(KEYS, ARGS)),
            ):
                got = await _measure(call, concurrency)
                if name not in best or got[0] < best[name][0]:
                    best[name] = got
        a, b = best["redis-py"], best["resp"]
        print(f"| {concurrency} | {a[0]:.1f} | {b[0]:.1f} | {a[0] / b[0]:.1f}× | {a[1]:.1f} | {b[1]:.1f} |")
    await rp.aclose()
    await ours.close()


if __name__ == "__main__":
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, Python"
        f" {sys.version.split()[0]}, uvloop {uvloop.__version__}; {CALLS} EVALSHA calls per case"
    )
    server = services.redis_server()
    try:
        uvloop.run(main(server.url))
    finally:
        server.close()
