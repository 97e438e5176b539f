"""Typed facade over the compiled `dragonfly._native` module: the only importer of it.

Submodules: `tokens` (counting, request pre-parse), `market` (listing ranking), `sse` (stream splicing),
`http1` (chunked body decoding).
"""

from dragonfly._native import (
    EventTooLargeError,
    InvalidInputError,
    MarketError,
    NativeError,
    StreamError,
    TokenizerError,
)

__all__ = [
    "EventTooLargeError",
    "InvalidInputError",
    "MarketError",
    "NativeError",
    "StreamError",
    "TokenizerError",
]
