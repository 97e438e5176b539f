"""Typed facade over the native HTTP/1.1 framing used by the seller client (`gateway/h1.py`).

`ChunkedDecoder()` decodes a chunked body (RFC 9112 §7.1) as it arrives, split anywhere:

- `decode(data) -> bytes`: the chunk data carried by `data` (extensions and trailers dropped). Invalid
  framing (a size that is not hex, data longer than its size, a framing line over 4 KiB) raises
  `StreamError`; the decoder must not be used after that.
- `done`: the last chunk and the end of the trailers were read; `excess`: bytes that came after it.

In Rust because a relayed stream decodes every chunk of every stream: the Python state machine it
replaced took 1.44 µs for one 236-byte SSE chunk and 25 µs for 20 of them in one read, this 0.15 and
0.84 µs (`python benchmarks/micro/bench_http1.py`, same run).
"""

from __future__ import annotations

from dragonfly._native import ChunkedDecoder

__all__ = ["ChunkedDecoder"]
