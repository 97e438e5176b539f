"""The `answer` target: Granian RSGI answering every request itself with a canned OpenAI-shaped body — no
seller call, no parsing, no gateway logic. What one Granian worker costs per request before any relaying:
the relay's CPU per request minus this one's is what the seller client costs the relay (benchmarks/README.md,
"What the rows still open need").

Chat: the fake seller's non-streamed answer, fixed. Streams: the fake seller's 20 chunks, a usage chunk and
`[DONE]`, sent as one piece (the relay sends what each seller read gives it, usually a few pieces).
Embeddings: one fixed vector. Started by `python -m benchmarks.load run --targets answer,...`."""

from __future__ import annotations

from typing import Any

import orjson

# The relay's own headers and stream test (bytes, never JSON), so both targets answer alike.
from benchmarks.load.bare_relay import JSON_HEADERS, SSE_HEADERS, STREAM_MARKS

_USAGE = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}

CHAT = orjson.dumps(
    {
        "id": "chatcmpl-answer",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "echo-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Echo: " + "lorem ipsum " * 9},
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    }
)


def _chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
    event = {
        "id": "chatcmpl-answer",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "echo-1",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        event["usage"] = usage
    return b"data: " + orjson.dumps(event) + b"\n\n"


STREAM = b"".join(
    [_chunk({"role": "assistant", "content": ""}, None)]
    + [_chunk({"content": f"tok{i} "}, None) for i in range(20)]
    + [_chunk({}, "stop"), _chunk({}, None, _USAGE), b"data: [DONE]\n\n"]
)
EMBEDDING = orjson.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0] * 16}],
        "model": "echo-1",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
)


class BareAnswer:
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        body = await proto()
        if scope.path.endswith("/embeddings"):
            proto.response_bytes(200, JSON_HEADERS, EMBEDDING)
        elif any(mark in body for mark in STREAM_MARKS):
            transport = proto.response_stream(200, SSE_HEADERS)
            await transport.send_bytes(STREAM)
        else:
            proto.response_bytes(200, JSON_HEADERS, CHAT)


def create_app() -> BareAnswer:
    return BareAnswer()
