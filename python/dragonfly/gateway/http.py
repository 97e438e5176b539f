"""Small RSGI helpers: bounded body reads, JSON and error responses, header access."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import orjson
from granian.rsgi import ProtocolClosed

from dragonfly.errors import DragonflyError, InvalidRequest, RequestTimeout, RequestTooLarge

JSON_HEADERS = [("content-type", "application/json")]
# After these answers the connection is closed: what is left of the body must not be read as a request.
_CLOSE = {"connection": "close"}


class BodyDeadlines:
    """The request-body deadline of one worker (`DRAGONFLY_HTTP_BODY_TIMEOUT_S`; Granian has none). One
    sweep task cancels the reads that passed it, so a read costs a dict insert and delete instead of a
    timer (`asyncio.timeout` around it cost ~4.5 µs per request). A read is cut within a quarter of the
    deadline (at most 1 s) after it passed."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reading: dict[asyncio.Task[Any], float] = {}
        self._cut: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(1.0, max(0.05, self.timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            if not self.reading:
                continue
            now = loop.time()
            for task, deadline in list(self.reading.items()):
                if deadline <= now:
                    del self.reading[task]
                    self._cut.add(task)
                    task.cancel()

    def timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"The request body did not arrive within {self.timeout_s:g} s.")

    def was_cut(self, task: asyncio.Task[Any]) -> bool:
        if task in self._cut:
            self._cut.discard(task)
            return True
        return False


async def read_body(proto: Any, headers: Any, limit: int, deadlines: BodyDeadlines) -> bytes:
    """Read the whole request body before its deadline (else 408), refusing (413) anything over `limit`
    bytes without buffering it all, and (400) a body that broke off or is malformed. After a 408 or 400
    the connection is closed (`connection: close`): the rest of that body must not be read as a request.

    Granian (hyper) has checked the framing: a bad `content-length`, or two different ones, is its own 400;
    under `transfer-encoding: chunked` the `content-length` is dropped, so a declared length here is the
    one hyper reads by. A broken chunked body (a bad chunk size, the client gone mid-body) is not reported by
    Granian's body iterator: it yields an empty piece for the error, then the empty piece that ends every
    body. So an empty piece that is not the last one means a broken body (or request trailers, which no
    API client sends) and is refused, never passed on as if the body had ended there."""
    task = asyncio.current_task()
    if task is None:  # not run as an asyncio task (Granian's `--task-impl rust`): a timer of its own
        try:
            async with asyncio.timeout(deadlines.timeout_s):
                return await _read_body(proto, headers, limit)
        except TimeoutError:
            raise deadlines.timed_out() from None
    deadlines.reading[task] = asyncio.get_running_loop().time() + deadlines.timeout_s
    try:
        return await _read_body(proto, headers, limit)
    except asyncio.CancelledError:
        if not deadlines.was_cut(task):
            raise
        task.uncancel()
        raise deadlines.timed_out() from None
    finally:
        deadlines.reading.pop(task, None)


async def _read_body(proto: Any, headers: Any, limit: int) -> bytes:
    declared = headers.get("content-length")
    try:
        if declared is not None:
            if not declared.isdigit():
                raise InvalidRequest("Invalid content-length.", headers=_CLOSE)
            if int(declared) > limit:
                raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
            body: bytes = await proto()  # the length is known and bounded: one read, no chunk loop
            return body
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            # hyper frames `gzip, chunked` by its last coding and would hand the body on still coded.
            raise InvalidRequest("Only the chunked transfer-coding is supported.", headers=_CLOSE)
        parts: list[bytes] = []
        size = 0
        ended = False
        async for chunk in proto:
            if ended:
                raise InvalidRequest("The request body is malformed or incomplete.", headers=_CLOSE)
            if not chunk:
                ended = True
                continue
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
            parts.append(chunk)
        return b"".join(parts)
    except ProtocolClosed:
        # Fewer bytes than `content-length` before the client closed, or a broken chunked body.
        raise InvalidRequest("The request body is malformed or incomplete.", headers=_CLOSE) from None


def send_json(
    proto: Any, status: int, payload: Any, request_id: str, extra: list[tuple[str, str]] | None = None
) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = [*JSON_HEADERS, ("x-request-id", request_id)]
    if extra:
        headers.extend(extra)
    proto.response_bytes(status, headers, body)


def send_error(proto: Any, err: DragonflyError, request_id: str) -> None:
    send_json(proto, err.status, err.body(), request_id, err.response_headers())


def bearer_token(headers: Any) -> str | None:
    raw = headers.get("authorization")
    if not raw:
        return None
    scheme, _, token = raw.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def query_param(query_string: str, name: str) -> str | None:
    values = parse_qs(query_string, keep_blank_values=True).get(name)
    return values[0] if values else None
