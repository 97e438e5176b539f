"""Property-based fuzzing of the seller client's HTTP/1.1 response parsing (gateway.h1) through its real
reading path: `H1Connection.data_received` fed a seller's bytes in pieces (a task yielding to the loop
between pieces, as split socket reads arrive), the head read by `UpstreamClient._response` (`parse_head`,
`body_framing`) and the body by `H1Response.read` or `H1Response.pipe` (the gateway's two ways).

Properties: a well-formed answer (interim 1xx heads, any headers, a body framed by Content-Length, chunked
coding with extensions and trailers, or the close; optionally gzip-coded) split anywhere gives the same
status, headers and body, and the connection back for reuse when framed; a malformed one (garbage status
lines, header lines, Content-Length values, chunk sizes, an oversized head, a body cut short) raises an
`UpstreamFailure` — never another exception, never a hang (every exchange runs under a timeout).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dragonfly.config import Settings
from dragonfly.gateway.h1 import MAX_HEAD, BodyTooLarge, H1Connection, UpstreamFailure
from dragonfly.gateway.upstream import UpstreamBroken, UpstreamClient

pytestmark = pytest.mark.timeout(60)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Transport:
    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


_LOOP: asyncio.AbstractEventLoop | None = None


@pytest.fixture(scope="module", autouse=True)
def _loop() -> Iterator[None]:
    global _LOOP
    _LOOP = asyncio.new_event_loop()
    yield
    _LOOP.close()
    _LOOP = None


class Outcome:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.reused = False
        self.error: UpstreamFailure | None = None


def exchange(pieces: list[bytes], *, close: bool, pipe: bool = False, limit: int = 1 << 20) -> Outcome:
    """Feed `pieces` (then the close, when `close`) to a connection waiting for an answer; read the answer
    to its end. Raises whatever the client raised other than an UpstreamFailure (a bug)."""
    assert _LOOP is not None
    return _LOOP.run_until_complete(asyncio.wait_for(_exchange(pieces, close, pipe, limit), 5.0))


async def _exchange(pieces: list[bytes], close: bool, pipe: bool, limit: int) -> Outcome:
    loop = asyncio.get_running_loop()
    out = Outcome()
    client = UpstreamClient(Settings())
    released: list[H1Connection] = []
    client._release = released.append  # type: ignore[method-assign]
    conn = H1Connection(loop, ("http", "seller", 80))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.begin(b"", 30.0, 30.0)

    async def feed() -> None:
        for piece in pieces:
            await asyncio.sleep(0)
            if conn.closed:
                return
            conn.data_received(piece)
        if close:
            await asyncio.sleep(0)
            if not conn.closed:
                conn.eof_received()
                conn.connection_lost(None)

    feeder = asyncio.ensure_future(feed())
    try:
        resp = await client._response(conn)
        out.status, out.headers = resp.status, resp.headers
        if pipe:
            got: list[bytes] = []

            def sink(piece: bytes) -> bool:
                got.append(piece)
                return False

            await resp.pipe(sink)
            out.body = b"".join(got)
        else:
            out.body = await resp.read(limit)
        resp.release()
        out.reused = released == [conn]
    except UpstreamFailure as exc:
        out.error = exc
    finally:
        if not feeder.done():
            await feeder
        conn.abort()
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    out, prev = [], 0
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return [p for p in out if p]


# -- well-formed answers ---------------------------------------------------------------------------------

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"content-encoding"}
_names = st.text(_TCHAR, min_size=1, max_size=20).map(str.encode).filter(lambda n: n.lower() not in _FRAMING)
_values = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip())
_reason = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def answers(draw: Any) -> tuple[bytes, int, list[tuple[bytes, bytes]], bytes, str]:
    """(wire bytes, status, the generated headers as parsed, decoded body, framing)."""
    wire = b""
    for _ in range(draw(st.integers(0, 2))):
        wire += b"HTTP/1.1 %d %s\r\n\r\n" % (draw(st.sampled_from([100, 102, 103])), draw(_reason))
    status = draw(st.sampled_from([200, 201, 400, 401, 404, 429, 500, 502, 503]))
    headers = draw(st.lists(st.tuples(_names, _values), max_size=6))
    body = draw(st.binary(max_size=1500))
    coded = gzip.compress(body) if draw(st.booleans()) else None
    payload = body if coded is None else coded
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = [
        b"%s %d %s" % (draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"])), status, draw(_reason))
    ]
    http10 = head[0].startswith(b"HTTP/1.0")
    head += [b"%s:%s%s" % (n, draw(st.sampled_from([b"", b" ", b"\t "])), v) for n, v in headers]
    if coded is not None:
        head.append(b"Content-Encoding: gzip")
    if http10 and framing != "close":
        head.append(b"Connection: keep-alive")
    if framing == "length":
        head.append(b"Content-Length: %d" % len(payload))
        data = payload
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 400), max_size=8))
        data, pos = b"", 0
        for n in [*sizes, len(payload)]:
            part = payload[pos : pos + n]
            pos += len(part)
            if not part:
                continue
            size = b"%x" % len(part)
            if draw(st.booleans()):
                size = size.upper()
            ext = draw(st.sampled_from([b"", b";a=1", b';name="v"']))
            data += size + ext + b"\r\n" + part + b"\r\n"
        data += b"0\r\n" + draw(st.sampled_from([b"", b"x-trailer: 1\r\n"])) + b"\r\n"
    else:
        data = payload
    wire += b"\r\n".join(head) + b"\r\n\r\n" + data
    return wire, status, [(n.lower(), v) for n, v in headers], body, framing


def _check(out: Outcome, status: int, headers: list[tuple[bytes, bytes]], body: bytes, framing: str) -> None:
    assert out.error is None, out.error
    assert out.status == status
    generated = [h for h in out.headers if h[0] not in _FRAMING and not h[0].startswith(b":")]
    assert generated == headers
    assert out.body == body
    assert out.reused == (framing != "close")  # a framed body hands the connection back


@FUZZ
@given(answers(), st.lists(st.integers(min_value=0), max_size=16), st.booleans())
def test_well_formed_answers_split_anywhere_read_the_same(
    answer: tuple[bytes, int, list[tuple[bytes, bytes]], bytes, str], cuts: list[int], pipe: bool
) -> None:
    wire, status, headers, body, framing = answer
    out = exchange(_split(wire, cuts), close=framing == "close", pipe=pipe)
    _check(out, status, headers, body, framing)


@settings(max_examples=40, deadline=None)
@given(answers(), st.booleans())
def test_well_formed_answers_split_at_every_byte_boundary(
    answer: tuple[bytes, int, list[tuple[bytes, bytes]], bytes, str], pipe: bool
) -> None:
    wire, status, headers, body, framing = answer
    step = max(1, len(wire) // 300)  # every boundary of the head and the framing; every few of a long body
    for i in range(0, len(wire) + 1, step):
        out = exchange([wire[:i], wire[i:]], close=framing == "close", pipe=pipe)
        _check(out, status, headers, body, framing)


# -- malformed answers -----------------------------------------------------------------------------------


def _valid_status_line(line: bytes) -> bool:
    parts = line.split(b" ", 2)
    return (
        len(parts) >= 2
        and parts[0].startswith(b"HTTP/1.")
        and len(parts[1]) == 3
        and parts[1].isdigit()
        and 100 <= int(parts[1]) < 600
    )


_bad_status_lines = st.one_of(
    st.sampled_from(
        [
            b"",
            b"HTTP/1.1",
            b"HTTP/1.1 +12 OK",
            b"HTTP/1.1 -12 OK",
            b"HTTP/1.1 1_0 OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 099 Low",
            b"HTTP/1.1 600 High",
            b"HTTP/1.1  200 OK",
            b"HTTP/2 200 OK",
            b"ICY 200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.1 \xd9\xa2\xd9\xa0\xd9\xa0 OK",
        ]
    ),
    _reason.filter(lambda b: not _valid_status_line(b)),
    st.tuples(st.binary(min_size=3, max_size=3), _reason)
    .map(
        lambda t: (
            b"HTTP/1.1 %s %s" % (t[0].replace(b"\r", b"x").replace(b"\n", b"x").replace(b" ", b"x"), t[1])
        )
    )
    .filter(lambda b: not _valid_status_line(b)),
)


@FUZZ
@given(_bad_status_lines, st.lists(st.integers(min_value=0), max_size=6))
def test_a_garbage_status_line_is_upstream_broken(line: bytes, cuts: list[int]) -> None:
    wire = line + b"\r\ncontent-length: 2\r\n\r\nok"
    out = exchange(_split(wire, cuts), close=False)
    assert isinstance(out.error, UpstreamBroken), (out.error, out.status)


@FUZZ
@given(
    st.binary(min_size=1, max_size=80).map(
        lambda b: b.replace(b":", b"").replace(b"\r", b"").replace(b"\n", b"")
    )
)
def test_a_header_line_without_a_colon_is_upstream_broken(line: bytes) -> None:
    if not line:
        return
    out = exchange([b"HTTP/1.1 200 OK\r\nx-a: 1\r\n" + line + b"\r\ncontent-length: 0\r\n\r\n"], close=False)
    assert isinstance(out.error, UpstreamBroken)


_bad_lengths = st.one_of(
    st.sampled_from([b"", b"-1", b"+5", b"0x10", b"1.0", b"1 2", b"1_0", b"5, 6", b"\xd9\xa5", b"9" * 5000]),
    st.binary(min_size=1, max_size=10)
    .map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    .filter(lambda b: not b.strip().isdigit()),
)


@FUZZ
@given(_bad_lengths)
def test_a_bad_content_length_is_upstream_broken(value: bytes) -> None:
    out = exchange([b"HTTP/1.1 200 OK\r\ncontent-length: " + value + b"\r\n\r\n12345"], close=True)
    assert isinstance(out.error, UpstreamBroken), (value, out.error, out.body)


def test_conflicting_content_lengths_are_upstream_broken() -> None:
    out = exchange([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n12345"], close=True)
    assert isinstance(out.error, UpstreamBroken)


@FUZZ
@given(
    st.one_of(
        st.sampled_from([b"zz", b"-1", b"0x5", b"", b"f" * 40, b"1" * 5000, b"5 5"]),
        st.binary(min_size=1, max_size=12)
        .map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
        .filter(lambda b: b";" not in b and not all(c in b"0123456789abcdefABCDEF \t" for c in b)),
    ),
    st.booleans(),
)
def test_a_bad_chunk_size_is_upstream_broken(size: bytes, pipe: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    out = exchange([head, b"3\r\nabc\r\n", size + b"\r\nabcdef\r\n0\r\n\r\n"], close=True, pipe=pipe)
    assert isinstance(out.error, UpstreamBroken), (size, out.error, out.body)


@pytest.mark.parametrize("pipe", [False, True])
def test_chunk_data_longer_than_its_size_is_upstream_broken(pipe: bool) -> None:
    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"
    out = exchange([wire], close=False, pipe=pipe)
    assert isinstance(out.error, UpstreamBroken)


@FUZZ
@given(st.sampled_from(["length", "chunked"]), st.integers(0, 200), st.booleans())
def test_a_body_cut_short_is_upstream_broken(framing: str, cut: int, pipe: bool) -> None:
    body = b"x" * 300
    if framing == "length":
        wire = b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n" + body
    else:
        wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n12c\r\n" + body + b"\r\n0\r\n\r\n"
    head_end = wire.index(b"\r\n\r\n") + 4
    out = exchange([wire[: head_end + cut]], close=True, pipe=pipe)
    assert isinstance(out.error, UpstreamBroken)


def test_a_huge_content_length_reads_only_what_arrives() -> None:
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\nabc" % (10**18 - 1)
    out = exchange([wire], close=True)
    assert isinstance(out.error, UpstreamBroken)
    out = exchange([wire, b"x" * 5000], close=False, limit=4096)
    assert isinstance(out.error, BodyTooLarge)


@pytest.mark.parametrize("one_piece", [False, True])
def test_an_oversized_head_is_upstream_broken(one_piece: bool) -> None:
    lines = b"".join(b"x-filler-%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEAD // 100 + 10))
    wire = b"HTTP/1.1 200 OK\r\n" + lines + b"content-length: 0\r\n\r\n"
    assert len(wire) > MAX_HEAD
    pieces = [wire] if one_piece else _split(wire, list(range(0, len(wire), 4096)))
    out = exchange(pieces, close=False)  # no close: the limit itself must end it
    assert isinstance(out.error, UpstreamBroken)
    assert "too large" in str(out.error)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_arbitrary_bytes_after_a_status_line_end_in_an_answer_or_upstream_failure(
    data: bytes, cuts: list[int], pipe: bool
) -> None:
    exchange(_split(b"HTTP/1.1 200 OK\r\n" + data, cuts), close=True, pipe=pipe)  # raises on anything else


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes_end_in_an_answer_or_upstream_failure(data: bytes, cuts: list[int]) -> None:
    exchange(_split(data, cuts), close=True)
