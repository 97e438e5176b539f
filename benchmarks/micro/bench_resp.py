"""The state store's Redis client against the libraries, same run: CPU per script call in the calling
process for `storage.state.resp.RespClient` (hand-written, one pipelined connection), redis-py's asyncio
client with its pure-Python parser, redis-py's asyncio client with hiredis (its default when `hiredis` is
installed), and coredis (its mypyc-compiled parser; anyio on the asyncio loop). Same throwaway Redis
server, same script shape as admission (EVALSHA, 7 keys, 13 arguments), same event loop (uvloop, like
the data plane).

Run: `python -m benchmarks.micro.bench_resp` (needs `redis-server` on PATH — `scripts/ensure-system-deps.sh`
installs it — and the `bench` extra: redis, hiredis, coredis). CPU is `time.process_time()` of this
process only: the Redis server's work is the same for every client and is not counted.

Two shapes: one caller making sequential calls, and 64 calls in flight at once (`gather`, as a loaded
gateway's admissions are). redis-py gets a blocking pool of 64 connections (no caller ever waits for a
connection); coredis its default pool. Each round runs every client once in turn (interleaved, so drift on
this shared machine hits all of them); the figure is the median of the rounds, and the ratio is to the
hand-written client (> 1: the library costs more CPU per call).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import uvloop
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio import BlockingConnectionPool, Redis

from benchmarks.load import services
from dragonfly.storage.state.resp import RespClient, Script

LUA = "return {1, redis.call('INCR', KEYS[1])}"
KEYS = [f"df:{{a:bench}}:{i}" for i in range(7)]
ARGS = list(range(13))
CALLS = 4096  # per client, shape and round
ROUNDS = 5
SHAPES = (1, 64)  # calls in flight

Call = Callable[[], Awaitable[object]]


async def _measure(call: Call, concurrency: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    await asyncio.gather(*(worker(4) for _ in range(concurrency)))  # warm: connections open, scripts cached
    n = CALLS // concurrency
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for _ in range(concurrency)))
    total = n * concurrency
    return (time.process_time() - c0) / total * 1e6, (time.perf_counter() - t0) / total * 1e6


def _redis_py_call(script: Any) -> Call:
    async def call() -> object:
        return await script(keys=KEYS, args=ARGS)

    return call


async def _clients(url: str) -> tuple[dict[str, Call], list[Callable[[], Awaitable[None]]]]:
    calls: dict[str, Call] = {}
    closers: list[Callable[[], Awaitable[None]]] = []

    ours = RespClient(url)
    our_script = Script(ours, LUA)
    calls["resp (hand-written)"] = lambda: our_script(KEYS, ARGS)
    closers.append(ours.close)

    for name, parser in (
        ("redis-py, Python parser", _AsyncRESP2Parser),
        ("redis-py + hiredis", _AsyncHiredisParser),
    ):
        pool = BlockingConnectionPool.from_url(url, max_connections=max(SHAPES), parser_class=parser)
        rp = Redis.from_pool(pool)
        calls[name] = _redis_py_call(rp.register_script(LUA))
        closers.append(rp.aclose)

    try:
        import coredis
    except ImportError:  # not in the environment: measured without it
        pass
    else:
        cd = coredis.Redis.from_url(url)
        await cd.__aenter__()
        cd_script = cd.register_script(LUA)

        async def cd_call() -> object:
            return await cd_script(keys=KEYS, args=ARGS)

        async def cd_close() -> None:
            await cd.__aexit__(None, None, None)

        calls["coredis"] = cd_call
        closers.append(cd_close)
    return calls, closers


async def main(url: str) -> None:
    calls, closers = await _clients(url)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(ROUNDS):
        for concurrency in SHAPES:
            for name, call in calls.items():
                results.setdefault((name, concurrency), []).append(await _measure(call, concurrency))
    for concurrency in SHAPES:
        print(f"\n{concurrency} call(s) in flight, median of {ROUNDS} rounds × {CALLS} calls:\n")
        print("| client | CPU µs / call | × resp | wall µs / call |")
        print("|---|---:|---:|---:|")
        base = statistics.median(c for c, _ in results[("resp (hand-written)", concurrency)])
        for name in calls:
            got = results[(name, concurrency)]
            cpu = statistics.median(c for c, _ in got)
            wall = statistics.median(w for _, w in got)
            print(f"| {name} | {cpu:.1f} | {cpu / base:.2f} | {wall:.1f} |")
    for close in closers:
        await close()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    out = []
    for pkg in ("uvloop", "redis", "hiredis", "coredis"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except Exception:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


if __name__ == "__main__":
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {_cpu_model()}, {os.cpu_count()} cpus;"
        f" Python {sys.version.split()[0]}; {_versions()}; EVALSHA, {len(KEYS)} keys, {len(ARGS)} args"
    )
    server = services.redis_server()
    try:
        uvloop.run(main(server.url))
    finally:
        server.close()
