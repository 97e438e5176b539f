"""The gateway's seller client against aiohttp, same run: CPU per call in the calling process for
`gateway.upstream.UpstreamClient` (hand-written HTTP/1.1 over `gateway/h1.py`, keep-alive pool) and for
one shared `aiohttp.ClientSession` (its connection pool, as a gateway would hold one), both on uvloop,
against the same fake seller (`benchmarks/load/fake_seller.py`, Granian, one worker) running in its own
process so that its CPU is not counted.

Run: `python -m benchmarks.micro.bench_seller_client` (aiohttp is a runtime dependency; Granian runs the
seller).

Each call is what the gateway's seller call does: POST a chat request (JSON body, bearer key, accept and
identity encoding headers as `UpstreamClient.post` sends them) and read the answer to its end —
non-streamed (a ~300-byte JSON body: `read(limit)` vs `ClientResponse.read()`) or streamed (20 SSE content
chunks + usage + `[DONE]`, chunked: `H1Response.pipe` with a sink, how the gateway relays, vs iterating
`content.iter_any()`) — then hands the connection back for reuse. Shapes: sequential calls from one task,
and 64 calls in flight (`gather`). Each round runs every client and case once (interleaved); figures are
the medians of the rounds, the ratio is aiohttp's CPU over the hand-written client's.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path

import aiohttp
import orjson
import uvloop

from benchmarks.load import targets
from dragonfly.config import Settings
from dragonfly.gateway.upstream import UpstreamClient

CALLS = 1024  # per client, case, shape and round
ROUNDS = 5
SHAPES = (1, 64)
CHUNKS = 20
PATH = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say something short."}]
PLAIN = orjson.dumps({"model": "echo-1", "messages": MESSAGES, "max_tokens": 2})
STREAM = orjson.dumps({"model": "echo-1", "messages": MESSAGES, "stream": True})

Call = Callable[[], Awaitable[int]]  # returns the body bytes read


async def _measure(call: Call, concurrency: int) -> tuple[float, float, int]:
    """(CPU µs, wall µs) per call, and the body size of the last call."""
    size = 0

    async def worker(n: int) -> None:
        nonlocal size
        for _ in range(n):
            size = await call()

    await asyncio.gather(*(worker(2) for _ in range(concurrency)))  # warm: connections open
    n = CALLS // concurrency
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for _ in range(concurrency)))
    total = n * concurrency
    return (time.process_time() - c0) / total * 1e6, (time.perf_counter() - t0) / total * 1e6, size


def _ours(client: UpstreamClient, url: str, key: str) -> dict[str, Call]:
    async def plain() -> int:
        resp = await client.post(url, key, PLAIN, accept_sse=False)
        try:
            assert resp.status == 200, resp.status
            return len(await resp.read(1 << 20))
        finally:
            resp.release()

    async def stream() -> int:
        resp = await client.post(url, key, STREAM, accept_sse=True)
        got = 0

        def sink(piece: bytes) -> bool:
            nonlocal got
            got += len(piece)
            return False  # read to the end of the body

        try:
            assert resp.status == 200, resp.status
            await resp.pipe(sink)
            return got
        finally:
            resp.release()

    return {"non-streamed": plain, "streamed": stream}


def _aiohttp(session: aiohttp.ClientSession, url: str, key: str) -> dict[str, Call]:
    base = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "accept-encoding": "identity",
    }
    plain_headers = {**base, "accept": "application/json"}
    sse_headers = {**base, "accept": "text/event-stream"}

    async def plain() -> int:
        async with session.post(url, data=PLAIN, headers=plain_headers) as r:
            assert r.status == 200, r.status
            return len(await r.read())

    async def stream() -> int:
        got = 0
        async with session.post(url, data=STREAM, headers=sse_headers) as r:
            assert r.status == 200, r.status
            async for piece in r.content.iter_any():
                got += len(piece)
        return got

    return {"non-streamed": plain, "streamed": stream}


async def main(origin: str, key: str) -> None:
    url = origin + PATH
    ours = UpstreamClient(
        Settings(allow_private_upstreams=True, upstream_read_timeout_s=60.0, upstream_total_timeout_s=600.0)
    )
    await ours.start()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2 * max(SHAPES), keepalive_timeout=30.0),
        timeout=aiohttp.ClientTimeout(total=600.0, sock_read=60.0),
    )
    clients = {"hand-written (UpstreamClient)": _ours(ours, url, key), "aiohttp": _aiohttp(session, url, key)}
    cases = ("non-streamed", "streamed")
    results: dict[tuple[str, str, int], list[tuple[float, float, int]]] = {}
    for _ in range(ROUNDS):
        for case in cases:
            for concurrency in SHAPES:
                for name, calls in clients.items():
                    got = await _measure(calls[case], concurrency)
                    results.setdefault((name, case, concurrency), []).append(got)
    print(f"\nmedian of {ROUNDS} rounds × {CALLS} calls per row\n")
    print("| body | in flight | client | CPU µs / call | × hand-written | wall µs / call | body bytes |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for case in cases:
        for concurrency in SHAPES:
            base = statistics.median(
                r[0] for r in results[("hand-written (UpstreamClient)", case, concurrency)]
            )
            for name in clients:
                rounds = results[(name, case, concurrency)]
                cpu = statistics.median(r[0] for r in rounds)
                wall = statistics.median(r[1] for r in rounds)
                print(
                    f"| {case} | {concurrency} | {name} | {cpu:.0f} | {cpu / base:.2f} | {wall:.0f} |"
                    f" {rounds[-1][2]} |"
                )
    await session.close()
    await ours.close()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {_cpu_model()}, {os.cpu_count()} cpus;"
        f" Python {sys.version.split()[0]}; uvloop {version('uvloop')}, aiohttp {version('aiohttp')},"
        f" granian {version('granian')} (seller, 1 worker, separate process)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-seller-client-") as tmp:
        seller = targets.start_fake_seller(Path(tmp), chunks=CHUNKS)
        try:
            uvloop.run(main(seller.origin, seller.api_key))
        finally:
            seller.stop()
