"""Typed facade over the compiled `dragonfly._native` module: the only importer of it.

Submodules: `tokens` (counting, request pre-parse), `market` (listing ranking), `sse` (stream splicing),
`http1` (chunked body decoding), `sqlite_batch` (the settlement batch's SQLite writer, from the native
I/O crate `rust_core/io`).
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
