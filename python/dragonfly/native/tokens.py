"""Typed facade over the native token counter and request pre-parse.

The only module that imports `dragonfly._native` for token concerns. Counts are token-for-token those of
tiktoken for `o200k_base` and `cl100k_base`; vocabularies ship inside the native build.
"""

from __future__ import annotations

import re
from typing import Literal, cast

import orjson

from dragonfly import _native
from dragonfly.record import record

__all__ = [
    "EncodingName",
    "InvalidInputError",
    "PreParsed",
    "TokenCounter",
    "TokenizerError",
    "encoding_for_model",
    "preparse_request",
    "substitute_model",
]

EncodingName = Literal["o200k_base", "cl100k_base"]

TokenCounter = _native.TokenCounter
"""`TokenCounter(encoding)`: `.count(text) -> int`, `.count_chat(messages_json: bytes) -> int`, `.encoding`.
Raises `TokenizerError` for an unknown encoding and `InvalidInputError` for malformed messages JSON."""

TokenizerError = _native.TokenizerError
InvalidInputError = _native.InvalidInputError


@record
class PreParsed:
    """What the data plane needs from a request body before routing it."""

    model: str | None
    stream: bool
    include_usage: bool
    max_tokens: int | None
    """`max_completion_tokens`, else `max_tokens`."""
    n: int
    has_tools: bool
    prompt_tokens: int
    """Messages (OpenAI chat accounting) plus tool definitions, or an embeddings `input`."""
    estimated: bool
    """True when the model is not a known OpenAI model, no encoding was given, and `o200k_base` stood in
    for its tokenizer."""
    dragonfly: bytes | None
    """Raw JSON of the top-level `dragonfly` routing-override object, if any."""
    encoding: EncodingName = "o200k_base"
    """The encoding `prompt_tokens` was counted with."""
    prompt_covered: bool = True
    """False when the request holds something `prompt_tokens` counts only approximately or not at all:
    image, audio or file parts, tool definitions or earlier tool calls, a `response_format` (see
    `uncounted`). Billing caps a seller's reported prompt tokens only when this is true
    (domain/billing.py)."""
    completion_covered: bool = True
    """False when the request asks for answer tokens a local count of the answer's text cannot see:
    audio output, a predicted output (`uncounted`)."""


# Request members whose tokens the prompt count does not cover exactly (rust_core/src/tokens/chat.rs:
# an image part counts as a low-detail image, audio and file parts as nothing, tool calls as their name
# and arguments only; a response format's schema is added to the prompt by the provider).
_PROMPT_UNCOUNTED = (
    b'"image_url"',
    b'"input_audio"',
    b'"file"',
    b'"audio"',
    b'"tool_calls"',
    b'"function_call"',
    b'"response_format"',
)
# ... and that ask for answer tokens beyond the answer's text (audio output; predicted outputs, whose
# rejected tokens are billed as completion tokens).
_COMPLETION_UNCOUNTED = (b'"audio"', b'"modalities"', b'"prediction"')
# One pass over the body for all the names (one `in` per name costs about as much each).
_ANY_UNCOUNTED = re.compile(
    rb'"(?:image_url|input_audio|file|audio|tool_calls|function_call|response_format|modalities|prediction)"'
)


def uncounted(body: bytes) -> tuple[bool, bool]:
    """`(prompt, completion)`: whether the request holds members the local counts do not cover (see
    `_PROMPT_UNCOUNTED`). A byte search for the quoted member names: a string value equal to one of
    them also matches, which only leaves the seller's report standing for that trade. A body with
    `\\u` escapes (a key could be spelt with them) is first re-encoded without escapes."""
    escaped = b"\\u" in body
    if not escaped and _ANY_UNCOUNTED.search(body) is None:
        return False, False  # the common case: 1-2 us for a 1 KB body, 2-3 ms per MB
    if escaped:
        try:
            body = orjson.dumps(orjson.loads(body))
        except orjson.JSONDecodeError:
            return True, True
    return any(m in body for m in _PROMPT_UNCOUNTED), any(m in body for m in _COMPLETION_UNCOUNTED)


def load_encoding(name: EncodingName) -> None:
    """Load an encoding's vocabulary now, with the GIL released (call it on a background thread). The
    first count with an encoding otherwise loads it inline: 45–65 ms for o200k_base and ~20 ms for
    cl100k_base on this machine, with the event loop (and every stream on it) stopped meanwhile."""
    TokenCounter(name)


def encoding_for_model(model: str) -> tuple[EncodingName, bool]:
    """`(encoding name, estimated)` for an OpenAI model name; unknown models get `o200k_base`, estimated."""
    name, estimated = _native.encoding_for_model(model)
    return cast(EncodingName, name), estimated


def preparse_request(body: bytes, encoding: EncodingName | None = None) -> PreParsed:
    """Parse a chat-completions (or embeddings) body once. Raises `InvalidInputError` (→ HTTP 400).

    The prompt is counted with `encoding` when given — the encoding the chosen listing declares, which is
    then exact (`estimated=False`) — else with the encoding mapped from the body's `model`
    (`encoding_for_model`). Raises `TokenizerError` for an unknown `encoding`.
    """
    d = _native.preparse_request(body, encoding)
    has_tools = cast(bool, d["has_tools"])
    prompt_uncounted, completion_uncounted = uncounted(body)
    return PreParsed(
        model=cast("str | None", d["model"]),
        stream=cast(bool, d["stream"]),
        include_usage=cast(bool, d["include_usage"]),
        max_tokens=cast("int | None", d["max_tokens"]),
        n=cast(int, d["n"]),
        has_tools=has_tools,
        prompt_tokens=cast(int, d["prompt_tokens"]),
        estimated=cast(bool, d["estimated"]),
        dragonfly=cast("bytes | None", d["dragonfly"]),
        encoding=cast(EncodingName, d["encoding"]),
        prompt_covered=not (has_tools or prompt_uncounted),
        completion_covered=not completion_uncounted,
    )


def substitute_model(body: bytes, upstream_model: str) -> bytes:
    """`body` with top-level `model` replaced and the `dragonfly` member removed; other values byte-exact."""
    return _native.substitute_model(body, upstream_model)
