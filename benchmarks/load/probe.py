"""Unloaded latency at concurrency 1 over one keep-alive socket, measured in microseconds (Locust rounds
its percentiles to whole milliseconds, too coarse for a sub-millisecond hop). Non-streamed: the whole
response. Streamed (`stream=True`): time to the first `data:` byte of the body (TTFT)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import orjson

from benchmarks.load.stats import percentile


@dataclass
class ProbeResult:
    count: int
    errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float


def _request(host: str, port: int, path: str, api_key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nAccept-Encoding: identity\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket, buf: bytearray, first_data: list[int] | None = None) -> int:
    """Read one HTTP/1.1 response (content-length or chunked); returns the status. `buf` keeps extra.
    With `first_data`, appends the perf_counter_ns at which the body's first `data:` arrived."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).lower()
    status = int(head.split(b" ", 2)[1])
    del buf[:end]
    if b"transfer-encoding: chunked" in head:
        if first_data is not None:
            while b"data:" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            first_data.append(time.perf_counter_ns())
        while not buf.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        buf.clear()
        return status
    length = 0
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    del buf[:length]
    return status


def probe(
    origin: str,
    api_key: str,
    model: str,
    *,
    count: int = 2000,
    warmup: int = 200,
    max_s: float = 8.0,
    stream: bool = False,
) -> ProbeResult:
    """`count` sequential chat completions (after `warmup`), bounded by `max_s` seconds; streamed ones
    are timed to their first `data:` byte."""
    hostport = origin.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    payload = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 16}
    body = orjson.dumps(payload | {"stream": True} if stream else payload)
    req = _request(host, int(port), "/v1/chat/completions", api_key, body)
    samples: list[float] = []
    errors = 0
    deadline = time.monotonic() + max_s
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    try:
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                break
            first: list[int] | None = [] if stream else None
            t0 = time.perf_counter_ns()
            sock.sendall(req)
            status = _read_response(sock, buf, first)
            dt = ((first[0] if first else time.perf_counter_ns()) - t0) / 1000
            if status != 200:
                errors += 1
            elif i >= warmup:
                samples.append(dt)
    finally:
        sock.close()
    samples.sort()
    return ProbeResult(
        count=len(samples),
        errors=errors,
        p50_us=percentile(samples, 50),
        p90_us=percentile(samples, 90),
        p99_us=percentile(samples, 99),
        mean_us=sum(samples) / len(samples) if samples else float("nan"),
    )
