"""A minimal SSE client for the many-streams benchmark: one raw asyncio connection per stream.

aiohttp cost the client ~15–20 µs per received chunk; at 2,000 streams × 20 chunks/s that is most of a
core on a 2-core machine the gateway and the seller share, so the client itself stretched the streams it
measured. This protocol only finds the status line, stamps the first body byte and keeps the last bytes
to see `data: [DONE]` and the chunked terminator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

END = b"\r\n0\r\n\r\n"  # the chunked body's terminator after the last event


class _StreamReader(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[tuple[str, str | None]] = loop.create_future()
        self.head = bytearray()
        self.status = 0
        self.first: float | None = None
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            line = bytes(self.head[: self.head.find(b"\r\n")])
            self.status = int(line.split(b" ", 2)[1])
            if self.status != 200:
                self._finish("error", f"HTTP {self.status}")
                return
            data = bytes(self.head[end + 4 :])
            if not data:
                return
        if self.first is None:
            self.first = time.monotonic()
        self.tail = (self.tail + data)[-64:]
        if self.tail.endswith(END):
            self._finish("ok" if b"data: [DONE]" in self.tail else "truncated", None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("truncated", type(exc).__name__ if exc else None)

    def _finish(self, kind: str, err: str | None) -> None:
        if not self.done.done():
            self.done.set_result((kind, err))


def request_bytes(host: str, port: int, path: str, api_key: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def stream_once(host: str, port: int, request: bytes, out: list[Any]) -> None:
    """One stream; appends (kind, t_sent, t_first_byte, t_end, error) to `out`. Cancelling drops the
    connection (the client going away)."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    transport: asyncio.Transport | None = None
    reader: _StreamReader | None = None
    try:
        tr, rd = await asyncio.wait_for(loop.create_connection(lambda: _StreamReader(loop), host, port), 30)
        transport, reader = tr, rd
        tr.write(request)
        kind, err = await asyncio.wait_for(asyncio.shield(rd.done), 120)
        out.append((kind, t0, rd.first, time.monotonic(), err))
    except asyncio.CancelledError:
        out.append(("dropped", t0, reader.first if reader else None, time.monotonic(), None))
        raise
    except (OSError, TimeoutError) as exc:
        out.append(("error", t0, reader.first if reader else None, time.monotonic(), type(exc).__name__))
    finally:
        if transport is not None:
            transport.abort()
