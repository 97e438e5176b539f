"""Typed facade over the native SSE splicer and non-streaming body rewriter.

The only module that imports `dragonfly._native` for stream concerns.

`Splicer(request_id, public_model, include_usage, created, max_event_bytes=1 MiB, encoding="o200k_base")`
turns an upstream chat-completion SSE body, fed in any split, into the buyer's stream:

- `feed(data) -> bytes`: bytes to send to the buyer now. Output is LF-framed `data: {json}\\n\\n`; only the
  top-level `id` and `model` are rewritten, every other byte of each event is passed through (big integers
  included). Comments (keep-alives) pass through at once as `: …\\n\\n`. Non-JSON events are dropped and
  counted in `garbage_events`. An upstream error (`event: error`, or a top-level `error`) becomes an
  OpenAI-style error chunk (the `openai` SDK raises `APIError` on it). Chunks of 64 KiB and more are
  spliced with the GIL released (another thread using the same `Splicer` meanwhile gets a `RuntimeError`
  "already borrowed"; one `Splicer` belongs to one stream task anyway).
- `feed` never writes `data: [DONE]`: when the upstream sends it, `saw_done` turns true and everything after
  it is ignored. Settle, then call `finish() -> bytes`, which flushes, injects a usage chunk (when the
  buyer asked `include_usage` and no chunk with a top-level `usage` was forwarded) and ends with exactly one
  `data: [DONE]`. A second `finish()` returns `b""`.
- `error_event(message, code=None) -> bytes`: ends the buyer stream with an error chunk and `[DONE]` (use it
  when the upstream breaks after the first byte, or after `EventTooLargeError`; events already spliced in
  the failing `feed` are sent first).
- `replace_done_with_error(message, code=None) -> bytes`: after `finish()`, an error chunk and `[DONE]` to
  send in place of the `[DONE]` that ended `finish()`'s bytes, when the caller held them back and then could
  not complete the stream (the trade could not be recorded). `b""` if the stream already ended with an
  error, or a second time.
- `begin_continuation()`: the next bytes come from a new upstream stream continuing this one: framing
  restarts, its role-only preamble delta is dropped, ids/models/choice indices keep being handled.
- `set_prompt_tokens(n)`: the gateway's prompt count, used when the upstream reports no usage.

Read-only state: `usage` (dict of prompt/completion/total/cached/reasoning tokens, or None), `usage_json`
(the upstream's usage object as JSON text), `usage_source`, `counted_completion_tokens` (local count over
content, reasoning and tool-call arguments, each counted whole), `finish_reason` (last non-null),
`content_so_far` (choice 0), `reasoning_so_far`, `tool_calls`, `tool_call_open` (some tool call's arguments
are not yet valid JSON), `upstream_error`, `saw_done`, `events`, `garbage_events`, `bytes_in`, `bytes_out`.

Errors: `EventTooLargeError` (an event past `max_event_bytes`; the splicer then refuses further `feed`),
`StreamError` (used out of order, e.g. `feed` after `finish`), `InvalidInputError` (unknown encoding, body
that is not a JSON object). All are `NativeError`.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from dragonfly import _native

__all__ = [
    "Completion",
    "EventTooLargeError",
    "InvalidInputError",
    "NativeError",
    "Splicer",
    "StreamError",
    "ToolCall",
    "Usage",
    "UsageSource",
    "rewrite_completion",
]

UsageSource = Literal["upstream", "counted", "none"]
"""`upstream`: the seller reported usage (`usage`, or Groq's `x_groq.usage`). `counted`: no upstream figure;
prompt tokens from `set_prompt_tokens`, completion tokens counted locally. `none`: nothing seen yet."""

Splicer = _native.Splicer
NativeError = _native.NativeError
StreamError = _native.StreamError
EventTooLargeError = _native.EventTooLargeError
InvalidInputError = _native.InvalidInputError


class Usage(TypedDict):
    """Normalised usage. `cached_tokens` reads `prompt_tokens_details.cached_tokens`, Together's
    `cached_tokens` or DeepSeek's `prompt_cache_hit_tokens`; `reasoning_tokens` reads
    `completion_tokens_details.reasoning_tokens` (or the local count when `counted`)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int


class ToolCall(TypedDict):
    """A tool call assembled from its streamed fragments (or read from a message)."""

    choice: int
    index: int
    id: str | None
    name: str | None
    arguments: str


class Completion(TypedDict):
    """What `rewrite_completion` returns."""

    body: bytes
    usage: Usage | None
    finish_reason: str | None
    content: str
    tool_calls: list[ToolCall]
    counted_completion_tokens: int
    upstream_error: Any | None


def rewrite_completion(
    body: bytes,
    request_id: str,
    public_model: str,
    encoding: Literal["o200k_base", "cl100k_base"] = "o200k_base",
) -> Completion:
    """Rewrite a non-streaming chat-completion body for the buyer.

    Leading whitespace (OpenRouter's keep-alive padding) is dropped; only the top-level `id` and `model`
    are replaced and every other byte is kept (integers beyond 2^64 included). Also returns the usage,
    choice 0's `finish_reason` and message content, the tool calls, a local completion-token count, and
    the upstream's `error` object when the body is an error envelope. Bodies of 64 KiB and more are
    processed with the GIL released. Raises `InvalidInputError` when the body is not a JSON object.
    """
    return _native.rewrite_completion(body, request_id, public_model, encoding)
