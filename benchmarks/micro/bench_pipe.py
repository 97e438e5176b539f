"""The seller client's per-chunk cost on the stream path, in one process on one event loop: a relayed
stream's pieces arriving through `H1Connection.data_received`, consumed either by a reader task
(`read_some` in a loop: a future, a wake-up and a task step per piece — how streams were relayed before
d9a11b7) or by `H1Response.pipe` (the sink called from the data callback — how they are relayed now).

Run: `python benchmarks/micro/bench_pipe.py`. No sockets: the connection's transport is a stub, so the
figures are the Python and native work per chunk only (the kernel's and Granian's share come on top).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from typing import Any

from dragonfly.gateway.h1 import H1Connection, H1Response

EVENT = (
    b'data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1764000000,'
    b'"model":"echo-1","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" tok"},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
)
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
N = 100_000


class _Transport:
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort(self) -> None: ...
    def write(self, data: bytes) -> None: ...


def _response(loop: asyncio.AbstractEventLoop) -> tuple[H1Connection, H1Response]:
    conn = H1Connection(loop, ("http", "seller", 80))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.begin(b"", 60.0, 600.0)
    return conn, H1Response(conn, 200, [], "chunked", 0, True, None, lambda c: None)


async def _feed(conn: H1Connection) -> None:
    # One piece per loop turn, as the socket would deliver them.
    for _ in range(N):
        conn.data_received(CHUNK)
        await asyncio.sleep(0)
    conn.data_received(b"0\r\n\r\n")


async def reader_task() -> float:
    loop = asyncio.get_running_loop()
    conn, resp = _response(loop)
    got = 0

    async def read() -> None:
        nonlocal got
        while piece := await resp.read_some():
            got += len(piece)

    t0 = time.process_time()
    await asyncio.gather(read(), _feed(conn))
    dt = time.process_time() - t0
    assert got == N * len(EVENT)
    return dt


async def piped() -> float:
    loop = asyncio.get_running_loop()
    conn, resp = _response(loop)
    got = 0

    def sink(piece: bytes) -> bool:
        nonlocal got
        got += len(piece)
        return False

    t0 = time.process_time()
    done = resp.pipe(sink)
    await _feed(conn)
    await done
    dt = time.process_time() - t0
    assert got == N * len(EVENT)
    return dt


async def baseline() -> float:
    """The feeding loop alone (one loop turn per piece), subtracted from both."""
    t0 = time.process_time()
    for _ in range(N):
        await asyncio.sleep(0)
    return time.process_time() - t0


def main() -> None:
    try:
        import uvloop

        run: Any = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        run, loop_name = asyncio.run, "asyncio"
    py = sys.version.split()[0]
    print(f"# {platform.machine()}, {os.cpu_count()} cpus, Python {py}, {loop_name}; best of 5")
    base = min(run(baseline()) for _ in range(5))
    task = min(run(reader_task()) for _ in range(5)) - base
    pipe = min(run(piped()) for _ in range(5)) - base
    print("| consumer | µs per chunk (CPU, feeding loop subtracted) |")
    print("|---|---:|")
    print(f"| reader task (`read_some`) | {task / N * 1e6:.2f} |")
    print(f"| `pipe` | {pipe / N * 1e6:.2f} |")
    print(f"| reader / pipe | {task / pipe:.1f}× |")


if __name__ == "__main__":
    main()
