"""A minimal HTTP/1.1 client connection for the upstream hot path (asyncio Protocol, keep-alive).

Why not aiohttp here: per request it builds multidicts, a timer handle per read, a StreamReader, a
payload writer and a ClientResponse; its call was 19 % of the worker's GIL-held profile samples, and
replacing it took CPU per non-streamed request from 583 to 480 µs (benchmarks/README.md). A seller call is
always the same shape (POST, JSON body, bearer key, one response read to the end or relayed as it
arrives), so this module parses exactly that: a status line, headers, and a body framed by
Content-Length, chunked transfer coding or connection close, optionally gzip/deflate coded.

One watchdog timer per request enforces the read (silence) and total deadlines: arriving data only
stamps the time, the timer re-arms itself when it fires early. Reading is paused while more than
HIGH_WATER bytes wait to be consumed (a slow client), and the silence clock does not run while paused.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any, NoReturn

from dragonfly.native import StreamError
from dragonfly.native.http1 import ChunkedDecoder

MAX_HEAD = 64 * 1024
HIGH_WATER = 1024 * 1024
# A caller done before the body ended (a stream relayed up to `[DONE]`, whose chunked terminator comes in
# a later segment) leaves the rest to be read in the background: the connection goes back to the pool if
# the body ends within this time and size, else it is closed.
DRAIN_S = 1.0
DRAIN_BYTES = 64 * 1024


class UpstreamFailure(Exception):
    """The seller call failed; the message is safe to log (never contains a key or a body)."""


class UpstreamConnectError(UpstreamFailure):
    """The seller could not be reached (refused, DNS, forbidden address, closed before answering)."""


class UpstreamTimedOut(UpstreamFailure):
    """The seller did not answer, or went silent, for longer than allowed."""


class UpstreamBroken(UpstreamFailure):
    """The seller's answer broke off or was not valid HTTP/1.1."""


class BodyTooLarge(UpstreamFailure):
    """The seller's body exceeded what we buffer."""


class UpstreamDrained(UpstreamFailure):
    """The gateway cut the call: its worker is shutting down and the drain deadline passed
    (gateway/drain.py). Not the seller's failure."""


class H1Connection(asyncio.Protocol):
    """One keep-alive connection. Not safe for concurrent requests: the pool hands it to one at a time."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        key: tuple[str, str, int],
        open_set: set[H1Connection] | None = None,
    ) -> None:
        self.loop = loop
        self.key = key
        # The client's set of open connections (so a drain can cut them all); left on connection_lost.
        self.open_set = open_set
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        # Set while a response is piped (H1Response.pipe): called instead of waking a reader task.
        self.listener: Callable[[], None] | None = None
        self.closed = False
        self.eof = False
        self.paused = False
        self.timed_out = False
        self.drained = False  # cut by the gateway's drain deadline (UpstreamDrained)
        self.received = 0  # bytes received for the current request
        self.last_io = 0.0
        self.idle_since = 0.0
        self.requests = 0
        self._read_timeout = 0.0
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.open_set is not None:
            self.open_set.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.received += len(data)
        self.last_io = self.loop.time()
        if len(self.buf) > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        if self.open_set is not None:
            self.open_set.discard(self)
        self._stop_watchdog()
        self._wake()

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()
            return
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    # -- request life cycle ----------------------------------------------------------------------------

    def begin(self, data: bytes, read_timeout: float, total_timeout: float) -> None:
        """Send one request and arm the watchdog."""
        assert self.transport is not None
        self.requests += 1
        self.received = 0
        self.timed_out = False
        now = self.loop.time()
        self.last_io = now
        self._read_timeout = read_timeout
        self._deadline = now + total_timeout
        self._watchdog = self.loop.call_at(min(now + read_timeout, self._deadline), self._check)
        self.transport.write(data)

    def _check(self) -> None:
        self._watchdog = None
        if self.closed:
            return
        now = self.loop.time()
        if self.paused:
            self.last_io = now  # our reader is slow, the seller is not silent
        due = min(self.last_io + self._read_timeout, self._deadline)
        if now >= due:
            self.timed_out = True
            self.abort()
            return
        self._watchdog = self.loop.call_at(due, self._check)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def finish(self) -> None:
        """The response was read to its end: the connection may serve the next request."""
        self._stop_watchdog()
        self.idle_since = self.loop.time()

    def cut(self) -> None:
        """End the connection for the gateway's drain: whoever waits on it gets UpstreamDrained."""
        self.drained = True
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self._stop_watchdog()
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    async def wait_data(self) -> None:
        """Wait until more bytes arrive, or raise if the connection ended."""
        if self.closed or self.eof:
            raise self._ended()
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        fut = self.loop.create_future()
        self.waiter = fut
        try:
            await fut
        finally:
            self.waiter = None
        if not self.buf and (self.closed or self.eof):
            raise self._ended()

    def _ended(self) -> UpstreamFailure:
        if self.drained:
            return UpstreamDrained("the gateway is shutting down")
        if self.timed_out:
            return UpstreamTimedOut("upstream did not answer in time")
        if self.received == 0:
            return UpstreamConnectError("upstream closed the connection before answering")
        return UpstreamBroken("upstream closed the connection mid-response")

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return out


class H1Response:
    """Status and headers of an upstream answer; the body is read with `read` or `read_some`."""

    __slots__ = (
        "_chunked",
        "_conn",
        "_decoder",
        "_done",
        "_keep_alive",
        "_left",
        "_mode",
        "_pipe",
        "_pumping",
        "_release_cb",
        "_released",
        "_sink",
        "headers",
        "status",
    )

    def __init__(
        self,
        conn: H1Connection,
        status: int,
        headers: list[tuple[bytes, bytes]],
        mode: str,
        length: int,
        keep_alive: bool,
        decoder: Any,
        release_cb: Any,
    ) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._mode = mode  # "length", "chunked" or "close"
        self._left = length  # length mode: bytes left
        self._chunked = ChunkedDecoder() if mode == "chunked" else None
        self._keep_alive = keep_alive
        self._done = mode == "length" and length == 0
        self._released = False
        self._decoder = decoder
        self._release_cb = release_cb
        self._pipe: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], bool] | None = None
        self._pumping = False
        if self._done:
            conn.finish()

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def done(self) -> bool:
        return self._done

    async def read(self, limit: int) -> bytes:
        """The whole body (decoded), or BodyTooLarge past `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        while not self._done:
            piece = await self.read_some()
            size += len(piece)
            if size > limit:
                self.close()
                raise BodyTooLarge("upstream body is too large")
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_some(self) -> bytes:
        """The next piece of the body as soon as any is available; b"" once the body ended."""
        conn = self._conn
        while not self._done:
            piece = self._consume()
            if piece:
                return self._decode(piece)
            if self._done:
                break
            try:
                await conn.wait_data()
            except UpstreamFailure:
                if self._ended_by_close():
                    break
                raise
        return self._flush()

    def _ended_by_close(self) -> bool:
        """The connection ended before the framing did: True when that is how the body ends (an
        until-close body that did not time out), else the body broke off."""
        if self._mode == "close" and not self._conn.timed_out and not self._conn.drained:
            self._done = True
            self._keep_alive = False
            return True
        return False

    def _flush(self) -> bytes:
        """What the content decoder still holds once the body ended (b"" without one)."""
        if self._decoder is None:
            return b""
        tail: bytes = self._decoder.flush()
        self._decoder = None
        return tail

    def pipe(self, sink: Callable[[bytes], bool]) -> asyncio.Future[None]:
        """Hand every body piece to `sink` from the connection's own callback as it arrives.

        For relaying streams: a reader task would cost a future, a wake-up and a task step per piece
        (at 2,000 streams × 20 chunks/s, 40,000 a second). `sink(piece)` returns True when it needs no
        more (it saw the end of the stream). The returned future resolves when the body ended or the sink
        stopped, and fails with the UpstreamFailure that ended the connection or with what the sink
        raised."""
        assert self._pipe is None, "a response is piped once"
        self._pipe = self._conn.loop.create_future()
        self._sink = sink
        self._conn.listener = self._pump
        self._pump()
        return self._pipe

    def _pump(self) -> None:
        fut = self._pipe
        if fut is None or fut.done() or self._pumping:
            return  # re-entered from the sink (e.g. it closed the connection): the outer call goes on
        self._pumping = True
        try:
            self._pump_once()
        except Exception as exc:  # the sink's error, or invalid framing: end the pipe with it
            self._end_pipe(exc)
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        sink = self._sink
        assert sink is not None
        conn = self._conn
        while not self._done:
            piece = self._consume()
            if not piece:
                break
            if sink(self._decode(piece)):
                self._end_pipe(None)
                return
        if not self._done and (conn.closed or conn.eof) and not self._ended_by_close():
            self._end_pipe(conn._ended())
            return
        if self._done:
            tail = self._flush()
            if tail:
                sink(tail)  # the last piece: whatever the sink answers, the pipe ends here
            self._end_pipe(None)

    def _end_pipe(self, exc: BaseException | None) -> None:
        fut = self._pipe
        if self._conn.listener == self._pump:
            self._conn.listener = None
        self._sink = None
        if fut is None or fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

    def _decode(self, piece: bytes) -> bytes:
        if self._decoder is None:
            return piece
        try:
            out: bytes = self._decoder.decompress(piece)
        except zlib.error:
            self.close()
            raise UpstreamBroken("upstream body is not validly compressed") from None
        return out

    def _consume(self) -> bytes:
        """Take what the buffer holds of the body, advancing the framing state."""
        buf = self._conn.buf
        if not buf:
            return b""
        mode = self._mode
        if mode == "length":
            n = len(buf)
            if n <= self._left:
                self._left -= n
                out = self._conn.take()
            else:
                out = bytes(buf[: self._left])
                del buf[: self._left]
                self._left = 0
            if self._left == 0:
                self._end()
            return out
        if mode == "close":
            return self._conn.take()
        dec = self._chunked
        assert dec is not None
        try:
            out = dec.decode(self._conn.take())
        except StreamError as exc:
            self._broken(str(exc))
        if dec.done:
            self._end()
            if dec.excess:
                self._keep_alive = False  # bytes after the body: out of step, never reuse
        return out

    def _broken(self, why: str) -> NoReturn:
        self.close()
        raise UpstreamBroken(f"upstream sent invalid HTTP: {why}")

    def _end(self) -> None:
        self._done = True
        self._conn.finish()
        if self._conn.buf:  # bytes after the body: the connection is out of step, never reuse it
            self._keep_alive = False

    def release(self) -> None:
        """Give the connection back for reuse when the body was read to its end; when it was not (yet),
        read the rest in the background first (`DRAIN_S`, `DRAIN_BYTES`); else close it."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if not self._done and not conn.closed:
            try:
                self._consume()  # e.g. the chunked terminator that came after a stream's [DONE]
            except UpstreamFailure:
                pass
        if self._done and self._keep_alive and not conn.closed:
            self._release_cb(conn)
        elif not self._done and self._keep_alive and self._mode != "close" and not conn.closed:
            self._drain()
        else:
            conn.abort()

    def _drain(self) -> None:
        conn = self._conn
        budget = [DRAIN_BYTES]

        def discard(piece: bytes) -> bool:
            budget[0] -= len(piece)
            if budget[0] < 0:
                raise BodyTooLarge("upstream body went on too long after the caller was done")
            return False

        def drained(fut: asyncio.Future[None]) -> None:
            timer.cancel()
            ok = not fut.cancelled() and fut.exception() is None
            if ok and self._done and self._keep_alive and not conn.closed:
                self._release_cb(conn)
            else:
                conn.abort()

        timer = conn.loop.call_later(DRAIN_S, conn.abort)
        self._pipe = None  # a relayed stream piped already: this is a new pipe for the rest
        self.pipe(discard).add_done_callback(drained)

    def close(self) -> None:
        """Drop the connection now (the seller sees it close: a stream stops generating)."""
        self._released = True
        self._conn.abort()


def parse_head(conn: H1Connection) -> tuple[int, list[tuple[bytes, bytes]]] | None:
    """Status and headers from the buffer, consuming them, or None if the head is not complete yet.
    Interim 1xx answers are skipped."""
    buf = conn.buf
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD:  # also a whole oversized head that came in one read
            if len(buf) > MAX_HEAD:
                raise UpstreamBroken("upstream response head is too large")
            return None
        head = bytes(buf[:end])
        del buf[: end + 4]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        code = parts[1] if len(parts) >= 2 else b""
        # Three ASCII digits, 100-599 (RFC 9110 §15): int() alone would also take "+12" or "1_0".
        if (
            not parts[0].startswith(b"HTTP/1.")
            or len(code) != 3
            or not code.isdigit()
            or not b"100" <= code < b"600"
        ):
            raise UpstreamBroken("upstream sent an invalid status line")
        status = int(code)
        if 100 <= status < 200:
            continue
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise UpstreamBroken("upstream sent an invalid header line")
            headers.append((name.strip().lower(), value.strip()))
        if parts[0] == b"HTTP/1.0":
            headers.append((b":http10", b"1"))
        return status, headers


def body_framing(status: int, headers: list[tuple[bytes, bytes]]) -> tuple[str, int, bool, Any]:
    """(mode, length, keep_alive, decoder) for a response (RFC 9112 §6.3)."""
    length = -1
    chunked = False
    keep_alive = True
    http10 = False
    coding = b""
    for k, v in headers:
        if k == b"content-length":
            # At most 18 digits: int() refuses over 4,300 (ValueError), and no body is that long anyway.
            if not v.isdigit() or len(v) > 18 or (length >= 0 and int(v) != length):
                raise UpstreamBroken("upstream sent an invalid content-length")
            length = int(v)
        elif k == b"transfer-encoding":
            chunked = v.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            if not chunked:
                keep_alive = False  # an unknown coding: the body runs to the close
        elif k == b"connection":
            tokens = v.lower()
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                http10 = False
        elif k == b":http10":
            http10 = True
        elif k == b"content-encoding":
            coding = v.lower().strip()
    if http10 and not any(k == b"connection" and b"keep-alive" in v.lower() for k, v in headers):
        keep_alive = False
    decoder: Any = None
    if coding in (b"gzip", b"x-gzip", b"deflate"):
        decoder = zlib.decompressobj(47)  # zlib or gzip wrapper, detected from the header
    elif coding not in (b"", b"identity"):
        raise UpstreamBroken("upstream used an unsupported content-encoding")
    if status in (204, 304):
        return "length", 0, keep_alive, None
    if chunked:
        return "chunked", 0, keep_alive, decoder
    if length >= 0:
        return "length", length, keep_alive, decoder
    return "close", 0, False, decoder
