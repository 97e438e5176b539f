"""Splicer through the Python facade vs a pure-Python SSE splice (orjson), measured in the same run.

Run: `python benchmarks/micro/bench_sse.py` (after `maturin develop --release`). Pure-Rust figures for the
same stream: `cargo bench -p dragonfly-core --bench splice`.

The stream: an OpenAI-shaped chat completion — a role preamble, 1,000 content chunks of ~20-byte deltas,
a finish chunk, a usage chunk (`include_usage`), `[DONE]`: 1,004 events, ~305 KB. It is fed three ways:
in 1,460-byte pieces (one TCP segment each), in 16 KiB pieces (a typical socket read), and one event per
`feed` call (an upstream that flushes every chunk). Target: ≤ 2 µs per event including the FFI crossing.

The baseline is what a straightforward Python gateway does: split on blank lines, `orjson.loads` each
`data:` payload, set `id`/`model`, collect content and usage, `orjson.dumps` it back. It is not
equivalent — it re-serialises every event (big integers and key order are not kept, CR/CRLF framing,
comments and multi-line data are not handled) — so it flatters Python; the ratio is a lower bound.
"""

from __future__ import annotations

import os
import platform
import sys
import timeit
from collections.abc import Callable
from functools import partial

import orjson

from dragonfly.native.sse import Splicer, rewrite_completion

HEAD = (
    b'{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741569952,'
    b'"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf",'
    b'"choices":[{"index":0,"delta":'
)
WORDS = [
    "The quick brown fox ",
    "jumps over the lazy ",
    "dog, and then it run",
    "s back home again. ",
    "Ünïcödé → 東京 ok! ",
]
USAGE = (
    b'data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk",'
    b'"created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default",'
    b'"system_fingerprint":"fp_f9f4fb6dbf","choices":[],"usage":{"prompt_tokens":19,'
    b'"completion_tokens":1000,"total_tokens":1019,"prompt_tokens_details":{"cached_tokens":0,'
    b'"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n'
)


def stream(n: int = 1_000) -> list[bytes]:
    """The events of the benchmark stream, each with its `\\n\\n` (the same bytes as benches/splice.rs)."""

    def chunk(delta: bytes, finish: bytes) -> bytes:
        return b"data: " + HEAD + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]}\n\n"

    events = [chunk(b'{"role":"assistant","content":"","refusal":null}', b"null")]
    events += [chunk(orjson.dumps({"content": WORDS[i % len(WORDS)]}), b"null") for i in range(n)]
    events += [chunk(b"{}", b'"stop"'), USAGE, b"data: [DONE]\n\n"]
    return events


def native(pieces: list[bytes], count: bool) -> int:
    s = Splicer("chatcmpl-dragonfly-0001", "gpt-4o", True, 1_741_569_952)
    n = 0
    for p in pieces:
        n += len(s.feed(p))
    n += len(s.finish())
    if count:
        n += s.counted_completion_tokens
    return n


def python_baseline(pieces: list[bytes]) -> int:
    rid, model = "chatcmpl-dragonfly-0001", "gpt-4o"
    buf = b""
    content: list[str] = []
    usage = None
    n = 0
    for p in pieces:
        buf += p
        *events, buf = buf.split(b"\n\n")
        out = []
        for ev in events:
            for line in ev.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                obj = orjson.loads(payload)
                obj["id"] = rid
                obj["model"] = model
                for ch in obj.get("choices") or ():
                    text = (ch.get("delta") or {}).get("content")
                    if text:
                        content.append(text)
                if obj.get("usage"):
                    usage = obj["usage"]
                out.append(b"data: " + orjson.dumps(obj) + b"\n\n")
        n += len(b"".join(out))
    assert usage is not None and content
    return n + len(b"data: [DONE]\n\n")


def best_us(fn: Callable[[], object], budget_s: float = 1.0) -> float:
    n = max(1, int(budget_s / 5 / max(timeit.timeit(fn, number=1), 1e-6)))
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    events = stream()
    body = b"".join(events)
    assert b"".join(events).count(b"\n\n") == len(events)
    print(
        f"python {sys.version.split()[0]} | orjson {orjson.__version__} | {platform.platform()}"
        f" | {platform.processor() or platform.machine()} | cpus={os.cpu_count()}"
    )
    print(f"stream: {len(events)} events, {len(body):,} bytes")
    print(
        f"{'feeding':<20} {'native µs/ev':>12} {'MB/s':>7} {'+count µs/ev':>13} {'python µs/ev':>13}"
        f" {'python/native':>14}"
    )
    cases = {
        "1460-byte pieces": [body[i : i + 1460] for i in range(0, len(body), 1460)],
        "16 KiB pieces": [body[i : i + 16384] for i in range(0, len(body), 16384)],
        "one event per feed": events,
    }
    for label, pieces in cases.items():
        t_native = best_us(partial(native, pieces, False))
        t_count = best_us(partial(native, pieces, True))
        t_py = best_us(partial(python_baseline, pieces))
        per = len(events)
        print(
            f"{label:<20} {t_native / per:>12.3f} {len(body) / t_native:>7.1f} {t_count / per:>13.3f}"
            f" {t_py / per:>13.3f} {t_py / t_native:>13.1f}x"
        )
    print("target: ≤ 2 µs/event including the FFI crossing (native column)")
    completion_body()


# A typical non-streamed answer (gpt-4o-mini shape) for rewrite_completion, against the pure-Python
# minimum the gateway would otherwise do: orjson.loads, set id/model, read usage and choice 0, dumps.
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I assist you today? Let me know if there is anything.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 18,
            "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_1",
    }
)


def _python_completion() -> tuple[bytes, object, object]:
    obj = orjson.loads(COMPLETION)
    obj["id"], obj["model"] = "gen-1", "demo/echo-1"
    return orjson.dumps(obj), obj.get("usage"), obj["choices"][0].get("finish_reason")


def completion_body() -> None:
    t_native = best_us(partial(rewrite_completion, COMPLETION, "gen-1", "demo/echo-1"))
    t_py = best_us(_python_completion)
    print(
        f"rewrite_completion ({len(COMPLETION)} B body, incl. local completion count):"
        f" native {t_native:.2f} µs, python (orjson, no count) {t_py:.2f} µs,"
        f" python/native {t_py / t_native:.2f}x"
    )


if __name__ == "__main__":
    main()
