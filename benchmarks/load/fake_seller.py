"""A fake OpenAI-compatible seller fast enough never to be the bottleneck of a load test.

A tiny Granian RSGI app answering from canned byte templates (no framework, one orjson parse per
request): `GET /v1/models`, `POST /v1/chat/completions` (non-stream, or SSE with N content chunks at a
configurable inter-chunk delay, usage chunk on `stream_options.include_usage`), `POST /v1/embeddings`,
and `GET /_stats` (this worker's counters: requests, completed, cancelled streams, active streams).

Configured through the environment (the harness starts it with Granian):

    FAKE_SELLER_API_KEY        bearer key it accepts (default: demo-provider-key)
    FAKE_SELLER_CHUNKS         content chunks per streamed answer (default 20); `max_tokens` caps it
    FAKE_SELLER_CHUNK_DELAY_S  pause before every content chunk after the first (default 0)
    FAKE_SELLER_FIRST_DELAY_S  pause before the first content chunk (default 0)
    FAKE_SELLER_EMBED_DIMS     default embedding dimensions (default 256)

    python -m granian --interface rsgi --factory --no-ws benchmarks.load.fake_seller:create_app

A stream whose client goes away is cancelled at once (Granian's `client_disconnect`), counted in
`cancelled`, and its CLOCK_MONOTONIC time kept in `last_cancel_mono` so a harness can measure how long
a gateway took to cancel the upstream after its own client left.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import time
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

import orjson

JSON_HEADERS = [("content-type", "application/json")]
SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
DONE = b"data: [DONE]\n\n"
WORD = "tok"
_ID = b"@@ID@@"


@dataclass
class SellerSettings:
    api_key: str = "demo-provider-key"
    chunks: int = 20
    chunk_delay_s: float = 0.0
    first_delay_s: float = 0.0
    embed_dims: int = 256

    @classmethod
    def from_env(cls) -> SellerSettings:
        e = os.environ
        return cls(
            api_key=e.get("FAKE_SELLER_API_KEY", cls.api_key),
            chunks=int(e.get("FAKE_SELLER_CHUNKS", cls.chunks)),
            chunk_delay_s=float(e.get("FAKE_SELLER_CHUNK_DELAY_S", cls.chunk_delay_s)),
            first_delay_s=float(e.get("FAKE_SELLER_FIRST_DELAY_S", cls.first_delay_s)),
            embed_dims=int(e.get("FAKE_SELLER_EMBED_DIMS", cls.embed_dims)),
        )


@dataclass
class SellerCounters:
    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    active_streams: int = 0
    peak_streams: int = 0
    last_cancel_mono: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "requests": self.requests,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "active_streams": self.active_streams,
            "peak_streams": self.peak_streams,
            "last_cancel_mono": self.last_cancel_mono,
            "errors": dict(self.errors),
        }


def _prompt_tokens(messages: Any) -> int:
    words = 0
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                words += len(content.split())
    return max(1, words + 3)


class StreamTemplates:
    """The SSE events of one answer shape, with the completion id left as a placeholder."""

    def __init__(self, n: int, include_usage: bool) -> None:
        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            body: dict[str, Any] = {
                "id": "@@ID@@",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "@@MODEL@@",
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                body["usage"] = None
            return b"data: " + orjson.dumps(body) + b"\n\n"

        self.n = n
        self.head = event({"role": "assistant", "content": ""}, None)
        self.first = event({"content": WORD}, None)
        self.content = event({"content": " " + WORD}, None)
        self.tail = event({}, "stop" if n else "length")
        self.include_usage = include_usage


class Pacer:
    """Sends the paced content chunks of every open stream from one timer, instead of a task per stream
    sleeping between chunks: at 2,000 streams × 20 chunks/s those 40,000 wake-ups a second made the
    seller itself stretch its streams. Each stream keeps its own schedule (chunk k at start + k × delay,
    no drift); a chunk goes out at most a timer tick (1 ms in uvloop) late."""

    EARLY_S = 0.0005  # send what is due within half a millisecond in the same tick

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def run(self, transport: Any, chunk: bytes, count: int, delay: float) -> asyncio.Future[None]:
        """Send `chunk` `count` times, `delay` apart (the first after `delay`); resolves after the last.
        Cancelling the future stops the stream."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if count <= 0:
            fut.set_result(None)
            return fut
        self._push(loop, loop.time() + delay, [transport, chunk, count, delay, fut])
        return fut

    def _push(self, loop: asyncio.AbstractEventLoop, due: float, st: list[Any]) -> None:
        heappush(self._heap, (due, next(self._seq), st))
        if self._timer is None or due < self._timer_due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_due = loop.call_at(due, self._tick, loop), due

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        heap = self._heap
        horizon = loop.time() + self.EARLY_S
        while heap and heap[0][0] <= horizon:
            due, _, st = heappop(heap)
            transport, chunk, left, delay, fut = st
            if fut.done():
                continue  # cancelled: the client went away
            # Granian queues the bytes at once and returns an awaitable that is already complete.
            transport.send_bytes(chunk)
            st[2] = left = left - 1
            if left == 0:
                fut.set_result(None)
            else:
                heappush(heap, (due + delay, next(self._seq), st))
        if heap:
            self._timer, self._timer_due = loop.call_at(heap[0][0], self._tick, loop), heap[0][0]


class FakeSeller:
    def __init__(self, settings: SellerSettings) -> None:
        self.s = settings
        self.stats = SellerCounters()
        self._pacer = Pacer()
        self._key = f"Bearer {settings.api_key}".encode()
        self._ids = itertools.count(1)
        self._templates: dict[tuple[int, bool], StreamTemplates] = {}
        self._vectors: dict[int, bytes] = {}
        self._models = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake-seller"} for m in MODELS
                ],
            }
        )

    # --- RSGI -----------------------------------------------------------------------------------------

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        path = scope.path
        if path == "/_stats":
            proto.response_bytes(200, JSON_HEADERS, orjson.dumps(self.stats.snapshot()))
            return
        if not hmac.compare_digest((scope.headers.get("authorization") or "").encode(), self._key):
            await proto()
            self._error(proto, 401, "Incorrect API key provided.", "invalid_api_key")
            return
        if scope.method == "GET" and path == "/v1/models":
            proto.response_bytes(200, JSON_HEADERS, self._models)
            return
        if scope.method != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._error(proto, 404, f"Unknown path {path}.", "not_found")
            return
        self.stats.requests += 1
        try:
            body = orjson.loads(await proto())
            model = body["model"]
            if not isinstance(model, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._error(proto, 400, "invalid request body", "invalid_request")
            return
        if path == "/v1/embeddings":
            self._embeddings(proto, body, model)
        elif body.get("stream"):
            await self._stream(proto, body, model)
        else:
            await self._chat(proto, body, model)

    def _error(self, proto: Any, status: int, message: str, code: str) -> None:
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        err = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        proto.response_bytes(status, JSON_HEADERS, orjson.dumps(err))

    def _n(self, body: dict[str, Any]) -> int:
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        n = self.s.chunks
        return min(n, cap) if isinstance(cap, int) and cap > 0 else n

    async def _chat(self, proto: Any, body: dict[str, Any], model: str) -> None:
        n = self._n(body)
        delay = self.s.first_delay_s + self.s.chunk_delay_s * max(0, n - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        prompt = _prompt_tokens(body.get("messages"))
        out = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join([WORD] * n), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
        }
        proto.response_bytes(200, JSON_HEADERS, orjson.dumps(out))
        self.stats.completed += 1

    def _embeddings(self, proto: Any, body: dict[str, Any], model: str) -> None:
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) and raw and isinstance(raw[0], str) else [raw]
        dims = body.get("dimensions") or self.s.embed_dims
        if not isinstance(dims, int) or not 1 <= dims <= 4096:
            self._error(proto, 400, "`dimensions` must be an integer in 1..4096", "invalid_request")
            return
        vec = self._vectors.get(dims)
        if vec is None:
            vec = self._vectors[dims] = orjson.dumps([round((i % 17) / 17.0 - 0.5, 6) for i in range(dims)])
        tokens = sum(len(str(x).split()) for x in inputs) or 1
        items = b",".join(
            b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vec) for i in range(len(inputs))
        )
        out = b'{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (
            items,
            orjson.dumps(model),
            tokens,
            tokens,
        )
        proto.response_bytes(200, JSON_HEADERS, out)
        self.stats.completed += 1

    async def _stream(self, proto: Any, body: dict[str, Any], model: str) -> None:
        n = self._n(body)
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        tpl = self._templates.get((n, include_usage))
        if tpl is None:
            tpl = self._templates[(n, include_usage)] = StreamTemplates(n, include_usage)
        cid = b"chatcmpl-fake-%d" % next(self._ids)
        mdl = orjson.dumps(model)[1:-1]

        created = b'"created":%d,' % int(time.time())

        def fill(t: bytes) -> bytes:
            return t.replace(_ID, cid).replace(b"@@MODEL@@", mdl).replace(b'"created":1,', created)

        content = fill(tpl.content)
        stats = self.stats
        stats.active_streams += 1
        stats.peak_streams = max(stats.peak_streams, stats.active_streams)
        task = asyncio.current_task()
        gone = asyncio.ensure_future(proto.client_disconnect())

        def on_gone(_f: asyncio.Future[None]) -> None:
            if task is not None:
                task.cancel()

        gone.add_done_callback(on_gone)
        try:
            transport = proto.response_stream(200, SSE_HEADERS)
            await transport.send_bytes(fill(tpl.head))
            if self.s.first_delay_s > 0:
                await asyncio.sleep(self.s.first_delay_s)
            if n:
                await transport.send_bytes(fill(tpl.first))
            delay = self.s.chunk_delay_s
            if delay > 0:
                await self._pacer.run(transport, content, n - 1, delay)
            else:
                for _ in range(n - 1):
                    await transport.send_bytes(content)
            tail = fill(tpl.tail)
            if include_usage:
                prompt = _prompt_tokens(body.get("messages"))
                usage = {
                    "id": cid.decode(),
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n},
                }
                tail += b"data: " + orjson.dumps(usage) + b"\n\n"
            await transport.send_bytes(tail + DONE)
            gone.remove_done_callback(on_gone)
            stats.completed += 1
        except asyncio.CancelledError:
            stats.cancelled += 1
            stats.last_cancel_mono = time.monotonic()
            if not gone.done():
                raise  # cancelled for another reason (shutdown): let it propagate
            # The client went away: nobody to tell, the stream simply ends here.
        except (RuntimeError, OSError):  # RSGIProtocolClosed: written to a connection already gone
            stats.cancelled += 1
            stats.last_cancel_mono = time.monotonic()
        finally:
            stats.active_streams -= 1
            gone.remove_done_callback(on_gone)
            gone.cancel()


MODELS = ("echo-1",)


def create_app() -> FakeSeller:
    """Granian factory."""
    return FakeSeller(SellerSettings.from_env())
