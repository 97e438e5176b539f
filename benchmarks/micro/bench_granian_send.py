"""What one `send_bytes` on a Granian RSGI stream costs the event-loop thread: the call the data plane
makes for every relayed chunk (copy into a Rust buffer, push on the stream's channel, wake the runtime
thread that writes it). Measured inside a Granian worker with `time.thread_time_ns()` around each call;
between calls the handler sleeps 0.2 ms, as a relay waits for the seller's next chunk. Baseline, the same
run and loop: the same timing around a no-op Python call taking the same bytes (the clock reads
themselves are a syscall each), subtracted.

Run: `python benchmarks/micro/bench_granian_send.py` (starts Granian on a free loopback port, streams
20,000 chunks three times, prints µs per call). The module is also the app Granian serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":" tok"}}]}\n\n'
)
STATS: dict[str, Any] = {}


async def app(scope: Any, proto: Any) -> None:
    if scope.path == "/stats":
        proto.response_bytes(200, [], json.dumps(STATS).encode())
        return
    n = int(scope.query_string.split("=")[1]) if scope.query_string else 10_000
    transport = proto.response_stream(200, [("content-type", "text/event-stream")])
    spent = base = 0
    for _ in range(n):
        c0 = time.thread_time_ns()
        transport.send_bytes(EVENT)  # queued synchronously; the awaitable it returns is already done
        c1 = time.thread_time_ns()
        _noop(EVENT)
        c2 = time.thread_time_ns()
        spent += c1 - c0
        base += c2 - c1
        await asyncio.sleep(0.0002)
    STATS.update(n=n, send_us=spent / n / 1000, base_us=base / n / 1000)


def _noop(data: bytes) -> None:
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    import granian

    port = _free_port()
    argv = [sys.executable, "-m", "granian", "--interface", "rsgi", "--no-ws", "--port", str(port)]
    argv += ["--log-level", "warning", "benchmarks.micro.bench_granian_send:app"]
    proc = subprocess.Popen(argv)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        py = sys.version.split()[0]
        print(f"# {platform.machine()}, {os.cpu_count()} cpus, Python {py}, Granian {granian.__version__}")
        print("| run | chunks | send_bytes µs | baseline µs | send_bytes − baseline µs |")
        print("|---:|---:|---:|---:|---:|")
        for run in range(1, 4):
            with urllib.request.urlopen(f"{base}/s?n=20000", timeout=60) as r:
                r.read()
            with urllib.request.urlopen(f"{base}/stats", timeout=10) as r:
                st = json.loads(r.read())
            net = st["send_us"] - st["base_us"]
            print(f"| {run} | {st['n']:,} | {st['send_us']:.2f} | {st['base_us']:.2f} | {net:.2f} |")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
