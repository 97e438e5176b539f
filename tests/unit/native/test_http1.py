"""`ChunkedDecoder` (rust_core/src/http1): the chunked bodies the seller client decodes, split anywhere.

Checked against an encoder written here from RFC 9112 §7.1, and fed random bytes (never a panic)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly.native import NativeError, StreamError
from dragonfly.native.http1 import ChunkedDecoder


def encode(chunks: list[bytes], ext: bool, trailers: list[bytes]) -> bytes:
    out = b""
    for c in chunks:
        out += b"%x%s\r\n%s\r\n" % (len(c), b";name=value" if ext else b"", c)
    return out + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


def decode_in(pieces: list[bytes]) -> tuple[bytes, ChunkedDecoder]:
    dec = ChunkedDecoder()
    return b"".join(dec.decode(p) for p in pieces), dec


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=70), max_size=8),
    st.booleans(),
    st.lists(st.sampled_from([b"x-trailer: 1", b"checksum: abc"]), max_size=2),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.binary(max_size=10),
)
def test_decodes_any_split_of_a_valid_body(
    chunks: list[bytes], ext: bool, trailers: list[bytes], cuts: list[int], after: bytes
) -> None:
    wire = encode(chunks, ext, trailers)
    out, dec = decode_in(split(wire + after, cuts))
    assert out == b"".join(chunks)
    assert dec.done
    assert dec.excess == len(after)


def test_an_incomplete_body_is_not_done() -> None:
    wire = encode([b"data: 1\n\n", b"data: [DONE]\n\n"], False, [])
    out, dec = decode_in([wire[:-2]])
    assert out == b"data: 1\n\ndata: [DONE]\n\n"
    assert not dec.done


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"zz\r\n", "bad chunk size"),
        (b"0x5\r\n", "bad chunk size"),
        (b"2\r\nabc\r\n", "chunk data longer than its size"),
        (b"1" * 5000, "chunk framing line too long"),
    ],
)
def test_invalid_framing_raises_stream_error(wire: bytes, why: str) -> None:
    with pytest.raises(StreamError, match=why):
        ChunkedDecoder().decode(wire)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_bytes_never_panic(pieces: list[bytes]) -> None:
    dec = ChunkedDecoder()
    try:
        for p in pieces:
            dec.decode(p)
    except NativeError:
        pass
