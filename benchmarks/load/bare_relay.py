"""The floor of Dragonfly's data-plane stack: Granian RSGI + Dragonfly's own seller client, no gateway logic.

Target `relay` of the harness. It reads the body, posts it to the fake seller through the same keep-alive
pool the gateway uses (`dragonfly.gateway.upstream`), and answers with the seller's bytes: the whole body,
or every piece of a stream as it arrives. No authentication, routing, admission, splicing, token counting
or settlement. Whatever a target costs above this row is Dragonfly's logic; what this row costs above
nginx is the price of the stack (Granian's hand-offs between its Rust threads and the event loop, and a
Python client), which no change to the gateway's own code can take away.

Configured through the environment: BARE_RELAY_UPSTREAM (the seller's `/v1` URL) and BARE_RELAY_KEY.

    python -m granian --interface rsgi --factory --no-ws benchmarks.load.bare_relay:create_app
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dragonfly.config import Settings
from dragonfly.gateway.upstream import UpstreamClient, UpstreamFailure

MAX_BODY = 32 * 1024 * 1024
JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
# The only thing the relay reads of a request: whether to stream (as bytes, like Locust sends it; a
# relay that parsed the JSON would no longer be "no logic").
STREAM_MARKS = (b'"stream": true', b'"stream":true')


class BareRelay:
    def __init__(self, upstream: str, key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.key = key
        self.client = UpstreamClient(Settings(allow_private_upstreams=True))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.client.start())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.client.close())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        body = await proto()
        path = scope.path.removeprefix("/v1")
        streamed = any(mark in body for mark in STREAM_MARKS)
        try:
            resp = await self.client.post(self.upstream + path, self.key, body, accept_sse=streamed)
        except UpstreamFailure:
            proto.response_bytes(502, JSON_HEADERS, b'{"error":{"message":"upstream failed"}}')
            return
        if not streamed or resp.status != 200:
            try:
                raw = await resp.read(MAX_BODY)
            finally:
                resp.release()
            proto.response_bytes(resp.status, JSON_HEADERS, raw)
            return
        transport = proto.response_stream(200, SSE_HEADERS)

        def relay(piece: bytes) -> bool:
            transport.send_bytes(piece)  # queued by Granian at once (see gateway/stream.py)
            return False  # read to the end of the seller's body

        try:
            await resp.pipe(relay)
        except UpstreamFailure:
            resp.close()
            return
        resp.release()


def create_app() -> BareRelay:
    return BareRelay(os.environ["BARE_RELAY_UPSTREAM"], os.environ["BARE_RELAY_KEY"])
