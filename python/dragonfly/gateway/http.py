"""Small RSGI helpers: bounded body reads, JSON and error responses, header access."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from dragonfly.errors import DragonflyError, RequestTooLarge

JSON_HEADERS = [("content-type", "application/json")]


async def read_body(proto: Any, headers: Any, limit: int) -> bytes:
    """Read the request body, refusing (413) anything over `limit` bytes without buffering it all."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        body: bytes = await proto()  # the length is known and bounded: one read, no chunk loop
        return body
    parts: list[bytes] = []
    size = 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        parts.append(chunk)
    return b"".join(parts)


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
