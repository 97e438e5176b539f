"""Typed facade over the native token counter and request pre-parse.

The only module that imports `dragonfly._native` for token concerns. Counts are token-for-token those of
tiktoken for `o200k_base` and `cl100k_base`; vocabularies ship inside the native build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from dragonfly import _native

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


@dataclass(frozen=True, slots=True)
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
    return PreParsed(
        model=cast("str | None", d["model"]),
        stream=cast(bool, d["stream"]),
        include_usage=cast(bool, d["include_usage"]),
        max_tokens=cast("int | None", d["max_tokens"]),
        n=cast(int, d["n"]),
        has_tools=cast(bool, d["has_tools"]),
        prompt_tokens=cast(int, d["prompt_tokens"]),
        estimated=cast(bool, d["estimated"]),
        dragonfly=cast("bytes | None", d["dragonfly"]),
        encoding=cast(EncodingName, d["encoding"]),
    )


def substitute_model(body: bytes, upstream_model: str) -> bytes:
    """`body` with top-level `model` replaced and the `dragonfly` member removed; other values byte-exact."""
    return _native.substitute_model(body, upstream_model)
