"""A minimal pipelined Redis (RESP2) client for the state store's hot path.

Why not redis-py: its asyncio client spends 72–90 µs of CPU per EVALSHA in the calling process (7 keys,
13 arguments; 64 in flight or one), 71–85 µs with hiredis, coredis 92–187 µs, where this client spends
9.5–23 µs (`python -m benchmarks.micro.bench_resp`, same run, 2026-12-05) — a connection checked out of a
pool under a condition variable, the command packed through several layers, the reply read through a
StreamReader.
The state store makes two script calls per request, so that was most of what PostgreSQL + Redis mode
cost over the embedded one. Replies to commands on one connection come back in order, so a connection
is shared by every concurrent caller (pipelining): a command is one `write` and one future, resolved
when `data_received` has parsed its reply.

Failure model (the store fails closed on all of these): connect errors and timeouts, a command that got
no reply within `op_timeout_s` (the connection is dropped and every command pending on it fails), a
connection lost with commands pending, a reply that is not valid RESP2 (the connection is dropped; a
bulk length over `MAX_BULK` counts), and READONLY replies (a replica) raise `RespUnavailable`. Other
error replies raise `RespError`. The client reconnects lazily on the next command.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

Arg = str | bytes | int


class RespError(Exception):
    """An error reply from Redis (the message is Redis's)."""


class RespUnavailable(ConnectionError):
    """Redis could not be reached or did not answer in time."""


_INCOMPLETE = object()
# The longest bulk string a Redis server sends (its `proto-max-bulk-len` default, 512 MB). A longer length
# prefix is a corrupt reply: it fails the connection at once instead of buffering until the op timeout.
MAX_BULK = 512 * 1024 * 1024


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One reply from `buf` at `pos`: (value, next position), or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    nxt = end + 2
    if kind == 58:  # ':' integer
        return int(line), nxt
    if kind == 36:  # '$' bulk string
        n = int(line)
        if n < 0 or n > MAX_BULK:
            if n == -1:
                return None, nxt
            raise RespUnavailable("Redis sent an invalid reply")
        if len(buf) < nxt + n + 2:
            return _INCOMPLETE, pos
        if buf[nxt + n] != 13 or buf[nxt + n + 1] != 10:  # the data is not as long as its length said
            raise RespUnavailable("Redis sent an invalid reply")
        return bytes(buf[nxt : nxt + n]), nxt + n + 2
    if kind == 42:  # '*' array
        n = int(line)
        if n < 0:
            if n == -1:
                return None, nxt
            raise RespUnavailable("Redis sent an invalid reply")
        items: list[Any] = []
        for _ in range(n):
            item, nxt = _parse(buf, nxt)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, nxt
    if kind == 43:  # '+' simple string
        return line, nxt
    if kind == 45:  # '-' error
        text = line.decode("utf-8", "replace")
        if text.startswith("READONLY"):
            return RespUnavailable("Redis is read-only (a replica)"), nxt
        return RespError(text), nxt
    raise RespUnavailable("Redis sent an invalid reply")


def encode(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else (str(a).encode() if isinstance(a, int) else a.encode())
        parts.append(b"$%d\r\n" % len(b))
        parts.append(b)
        parts.append(b"\r\n")
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, op_timeout_s: float) -> None:
        self.loop = loop
        self.op_timeout_s = op_timeout_s
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        pending = self.pending
        try:
            while pending and pos < len(buf):
                value, pos = _parse(buf, pos)
                if value is _INCOMPLETE:
                    break
                fut, _ = pending.popleft()
                if fut.done():
                    continue
                if isinstance(value, Exception):
                    fut.set_exception(value)
                else:
                    fut.set_result(value)
        except (RespUnavailable, ValueError, RecursionError):  # RecursionError: arrays nested ~1,000 deep
            self.fail(RespUnavailable("Redis sent an invalid reply"))
            return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespUnavailable("connection to Redis lost"))

    def fail(self, err: Exception) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()
        while self.pending:
            fut, _ = self.pending.popleft()
            if not fut.done():
                fut.set_exception(err)

    def send(self, payload: bytes, count: int) -> list[asyncio.Future[Any]]:
        assert self.transport is not None
        now = self.loop.time()
        futs = [self.loop.create_future() for _ in range(count)]
        for f in futs:
            self.pending.append((f, now))
        self.transport.write(payload)
        if self._timer is None:
            self._timer = self.loop.call_at(now + self.op_timeout_s, self._check)
        return futs

    def _check(self) -> None:
        """The oldest command waiting longer than the timeout drops the connection."""
        self._timer = None
        if not self.pending or self.closed:
            return
        due = self.pending[0][1] + self.op_timeout_s
        if self.loop.time() >= due:
            self.fail(RespUnavailable("Redis did not answer in time"))
            return
        self._timer = self.loop.call_at(due, self._check)


class RespClient:
    """`redis://[[user]:password@]host[:port][/db]` over one shared, pipelined connection (Redis runs
    commands one at a time anyway; more connections would only add syscalls)."""

    def __init__(self, url: str, *, connect_timeout_s: float = 0.25, op_timeout_s: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError("only redis:// URLs are supported")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        path = parts.path.lstrip("/")
        self._db = int(path) if path else 0
        self._connect_timeout_s = connect_timeout_s
        self._op_timeout_s = op_timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _connection(self) -> _Connection:
        c = self._conn
        if c is not None and not c.closed:
            return c
        # One connect at a time; concurrent callers wait for it instead of opening a storm.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self._op_timeout_s), self._host, self._port
                )
        except (OSError, TimeoutError) as exc:
            raise RespUnavailable(f"cannot connect to Redis: {type(exc).__name__}") from None
        setup: list[list[Arg]] = []
        if self._password is not None:
            setup.append(["AUTH", self._user, self._password] if self._user else ["AUTH", self._password])
        if self._db:
            setup.append(["SELECT", self._db])
        if setup:
            futs = conn.send(b"".join(encode(c) for c in setup), len(setup))
            try:
                for f in futs:
                    await f
            except RespError:
                conn.fail(RespUnavailable("Redis refused the connection setup"))
                raise RespUnavailable("Redis refused AUTH/SELECT") from None
        self._conn = conn
        return conn

    async def execute(self, *args: Arg) -> Any:
        conn = await self._connection()
        (fut,) = conn.send(encode(args), 1)
        return await fut

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one write; each result or its exception (RespError) in order. Connection
        failures raise."""
        if not commands:
            return []
        conn = await self._connection()
        futs = conn.send(b"".join(encode(c) for c in commands), len(commands))
        out: list[Any] = []
        for f in futs:
            try:
                out.append(await f)
            except RespError as exc:
                out.append(exc)
        return out

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.fail(RespUnavailable("client closed"))
            self._conn = None


class Script:
    """A Lua script run by EVALSHA, falling back to EVAL when Redis does not know it (after a restart
    or a SCRIPT FLUSH); EVAL also caches it again."""

    def __init__(self, client: RespClient, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.client.execute("EVAL", self.source, len(keys), *keys, *args)

    async def many(self, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        """Several runs in one round trip; an error reply raises (after retrying NOSCRIPT ones by EVAL)."""
        cmds = [["EVALSHA", self.sha, len(k), *k, *a] for k, a in calls]
        results = await self.client.execute_many(cmds)
        for i, r in enumerate(results):
            if isinstance(r, RespError):
                if not str(r).startswith("NOSCRIPT"):
                    raise r
                k, a = calls[i]
                results[i] = await self.client.execute("EVAL", self.source, len(k), *k, *a)
        return results
