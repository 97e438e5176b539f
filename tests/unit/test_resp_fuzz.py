"""Property-based fuzzing of the state store's RESP reply parser (storage.state.resp) through its real
reading path: `_Connection.data_received`, fed the server's bytes in pieces by a stub transport, with the
futures `send` hands to callers.

Properties: well-formed replies split anywhere parse to the same values; malformed ones fail every pending
command with `RespUnavailable` (the client's "Redis is unusable" error) and drop the connection — never
another exception out of `data_received`, never a wrong value; an incomplete reply (a length prefix
promising more than arrives) ends in `RespUnavailable` at the op timeout, and a huge length prefix
allocates nothing on its promise.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dragonfly.storage.state.resp import MAX_BULK, RespError, RespUnavailable, _Connection

pytestmark = pytest.mark.timeout(60)

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None:
        self.aborted = True


class _Err:
    """An expected error reply: its exception type and message."""

    def __init__(self, kind: type[Exception], text: str) -> None:
        self.kind, self.text = kind, text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Err):
            return (self.kind, self.text) == (other.kind, other.text)
        return type(other) is self.kind and (self.kind is RespUnavailable or str(other) == self.text)

    def __repr__(self) -> str:
        return f"_Err({self.kind.__name__}, {self.text!r})"


# -- well-formed replies: (wire bytes, expected value) -----------------------------------------------------

_line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _simple(b: bytes) -> tuple[bytes, Any]:
    return b"+" + b + b"\r\n", b


def _error(b: bytes) -> tuple[bytes, Any]:
    text = b.decode("utf-8", "replace")
    if text.startswith("READONLY"):
        return b"-" + b + b"\r\n", _Err(RespUnavailable, "")
    return b"-" + b + b"\r\n", _Err(RespError, text)


_leaf = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: (b":%d\r\n" % i, i)),
    st.binary(max_size=300).map(lambda b: (b"$%d\r\n%s\r\n" % (len(b), b), b)),
    st.just((b"$-1\r\n", None)),
    st.just((b"*-1\r\n", None)),
    _line.map(_simple),
    _line.map(_error),
    st.sampled_from([b"READONLY You can't write against a read only replica.", b"NOSCRIPT", b"ERR x"]).map(
        _error
    ),
)


def _array(items: list[tuple[bytes, Any]]) -> tuple[bytes, Any]:
    return b"*%d\r\n" % len(items) + b"".join(w for w, _ in items), [v for _, v in items]


replies = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=6).map(_array), max_leaves=25)


def _split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    prev = 0
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        yield data[prev:c]
        prev = c
    yield data[prev:]


_LOOP: asyncio.AbstractEventLoop | None = None


@pytest.fixture(scope="module", autouse=True)
def _loop() -> Iterator[None]:
    """One event loop (never run) for the futures and timers of every example's connection."""
    global _LOOP
    _LOOP = asyncio.new_event_loop()
    yield
    _LOOP.close()
    _LOOP = None


def _outcome(fut: asyncio.Future[Any]) -> Any:
    if not fut.done():
        return "pending"
    exc = fut.exception()
    return exc if exc is not None else fut.result()


def _run(data_pieces: list[bytes], count: int) -> tuple[list[Any], _Transport]:
    """Feed the pieces to a connection with `count` commands pending; each command's outcome."""
    assert _LOOP is not None
    conn = _Connection(_LOOP, 60.0)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    futs = conn.send(b"", count)
    try:
        for piece in data_pieces:
            conn.data_received(piece)  # must never raise
        return [_outcome(f) for f in futs], transport
    finally:
        aborted = transport.aborted
        conn.fail(RespUnavailable("test over"))  # cancels the op timer
        transport.aborted = aborted
        for f in futs:
            f.exception()


@FUZZ
@given(st.lists(replies, min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=12))
def test_well_formed_replies_split_anywhere_parse_to_the_same_values(
    batch: list[tuple[bytes, Any]], cuts: list[int]
) -> None:
    wire = b"".join(w for w, _ in batch)
    got, transport = _run(list(_split(wire, cuts)), len(batch))
    assert got == [v for _, v in batch]
    assert not transport.aborted


@settings(max_examples=40, deadline=None)
@given(st.lists(replies, min_size=1, max_size=2))
def test_well_formed_replies_split_at_every_byte_boundary(batch: list[tuple[bytes, Any]]) -> None:
    wire = b"".join(w for w, _ in batch)
    expected = [v for _, v in batch]
    for i in range(len(wire) + 1):
        assert _run([wire[:i], wire[i:]], len(batch))[0] == expected, i
    assert _run([wire[i : i + 1] for i in range(len(wire))], len(batch))[0] == expected


# -- malformed replies ---------------------------------------------------------------------------------


def _assert_failed(got: list[Any], transport: _Transport) -> None:
    assert transport.aborted, got
    assert all(isinstance(v, RespUnavailable) for v in got), got


_garbage_number = st.one_of(
    st.sampled_from([b"", b"abc", b"1.5", b"0x10", b"--1", b"\xff", b"9" * 5000, b"1 2"]),
    st.binary(min_size=1, max_size=8).filter(lambda b: not any(48 <= c <= 57 for c in b) and b"\r" not in b),
)


@FUZZ
@given(
    st.one_of(
        # a type byte RESP2 does not have
        st.tuples(
            st.integers(0, 255).filter(lambda c: c not in b":$*+-"), _line.map(lambda b: b + b"\r\n")
        ).map(lambda t: bytes([t[0]]) + t[1]),
        # a length or integer that is not a number
        st.tuples(st.sampled_from([b":", b"$", b"*"]), _garbage_number).map(lambda t: t[0] + t[1] + b"\r\n"),
        # a negative length other than -1 (the null bulk/array)
        st.tuples(st.sampled_from([b"$", b"*"]), st.integers(min_value=2, max_value=2**70)).map(
            lambda t: b"%s-%d\r\n" % t
        ),
        # bulk data longer than its length (no CRLF where the length says it ends)
        st.tuples(st.binary(max_size=50), st.binary(min_size=1, max_size=10)).map(
            lambda t: b"$%d\r\n%s%s\r\n" % (len(t[0]), t[0], t[1].replace(b"\r", b"x"))
        ),
        # a length prefix beyond any reply Redis can send
        st.integers(min_value=MAX_BULK + 1, max_value=2**80).map(lambda n: b"$%d\r\n" % n),
    ),
    st.lists(replies, max_size=2),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_malformed_replies_fail_the_connection_with_resp_unavailable(
    bad: bytes, before: list[tuple[bytes, Any]], cuts: list[int]
) -> None:
    ok = b"".join(w for w, _ in before)
    got, transport = _run(list(_split(ok + bad + b"+after\r\n", cuts)), len(before) + 2)
    assert got[: len(before)] == [v for _, v in before]  # replies before the bad one are delivered
    _assert_failed(got[len(before) :], transport)


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes_never_raise_out_of_data_received(data: bytes, cuts: list[int]) -> None:
    got, transport = _run(list(_split(data, cuts)), 3)
    for v in got:
        assert v is None or v == "pending" or isinstance(v, bytes | int | list | RespError | RespUnavailable)
    if transport.aborted:  # a broken connection leaves no command waiting
        assert "pending" not in got


def test_deep_nesting_fails_cleanly() -> None:
    depth = 50_000  # far past the interpreter's recursion limit
    got, transport = _run([b"*1\r\n" * depth + b":1\r\n"], 1)
    _assert_failed(got, transport)
    # A nesting Redis could send (Lua tables nest a few levels) still parses.
    got, _ = _run([b"*1\r\n" * 50 + b":1\r\n"], 1)
    value = got[0]
    for _ in range(50):
        (value,) = value
    assert value == 1


@pytest.mark.parametrize("prefix", [b"$%d\r\n" % MAX_BULK, b"*%d\r\n" % 2**62, b"*3\r\n$%d\r\nab" % MAX_BULK])
def test_a_huge_length_prefix_allocates_nothing_on_its_promise(prefix: bytes) -> None:
    tracemalloc.start()
    try:
        got, transport = _run([prefix, b"x" * 1000], 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == ["pending"]  # waits for the rest (the op timeout ends it, below)
    assert not transport.aborted
    assert peak < 1 << 20


async def test_an_incomplete_reply_ends_at_the_op_timeout() -> None:
    loop = asyncio.get_running_loop()
    conn = _Connection(loop, 0.05)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    (fut,) = conn.send(b"", 1)
    conn.data_received(b"$%d\r\nonly a little" % MAX_BULK)
    with pytest.raises(RespUnavailable, match="did not answer in time"):
        await asyncio.wait_for(fut, 2.0)
    assert transport.aborted


def test_a_bulk_length_over_the_limit_fails_at_once() -> None:
    got, transport = _run([b"$%d\r\n" % (MAX_BULK + 1)], 1)
    _assert_failed(got, transport)
