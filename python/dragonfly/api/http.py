"""The one wrapper every route goes through: request id, body size limit, authentication, error rendering.

Robyn hands Python the whole body; the limit is enforced here (413 request_too_large) before parsing.
Any exception that is not a `DragonflyError` is logged (type and route only) and answered with a generic
500 `internal_error`, never a stack trace.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from robyn import Headers, Request, Response

from dragonfly.api.auth import Access, authenticate, authorize
from dragonfly.api.context import AppState, Call, client_of
from dragonfly.api.session_cookies import SESSION_COOKIE, read_cookies
from dragonfly.errors import DragonflyError, InternalError, NotFound, RequestTooLarge, ServiceUnavailable
from dragonfly.storage.ports import DatabaseUnavailable

log = logging.getLogger("dragonfly.api")
MAX_BODY_BYTES = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers; a name may repeat (set-cookie)


Handler = Callable[[Call], Awaitable[Reply | dict[str, Any]]]


def request_id(headers: Headers) -> str:
    """Echo the data plane's id when it forwarded one; otherwise a fresh uuid4."""
    given = headers.get("x-request-id")
    return given if given and _REQUEST_ID.match(given) else str(uuid.uuid4())


def json_response(status: int, body: Any, rid: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = {"content-type": "application/json", "x-request-id": rid, "cache-control": "no-store"}
    payload = b"" if status == 204 else orjson.dumps(body)
    response = Response(status_code=status, headers=headers, description=payload)
    for name, value in extra or []:
        response.headers.append(name, value)  # a repeated name (set-cookie) keeps every value
    return response


def error_response(err: DragonflyError, rid: str) -> Response:
    return Response(
        status_code=err.status,
        headers={"content-type": "application/json", "x-request-id": rid, **err.headers},
        description=err.body(),
    )


def _body_bytes(request: Request) -> bytes:
    body = request.body
    return body.encode() if isinstance(body, str) else bytes(body or b"")


def endpoint(
    state: AppState, access: Access, fn: Handler, name: str
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        rid = request_id(request.headers)
        try:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise RequestTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
            body = _body_bytes(request)
            if len(body) > MAX_BODY_BYTES:
                raise RequestTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
            principal = None
            if access is not Access.PUBLIC:
                # Bad credentials count against the client's address (services/abuse.py).
                client = client_of(request, state.settings)
                principal = await state.guard.authenticate(
                    client,
                    lambda: authenticate(state, request.headers, method=request.method),
                    # A browser's unrelated or stale cookies are not credentials; the session cookie is.
                    presented=bool(
                        request.headers.get("authorization")
                        or read_cookies(request.headers).get(SESSION_COOKIE)
                    ),
                )
                if principal.key_id is not None:
                    await state.guard.management_key_address(principal.key_id, client)
                authorize(principal, access)
            result = await fn(Call(state=state, request=request, principal_=principal, body_bytes=body))
            reply = result if isinstance(result, Reply) else Reply(result)
            return json_response(reply.status, reply.body, rid, list(reply.headers))
        except DragonflyError as err:
            return error_response(err, rid)
        except DatabaseUnavailable:
            return error_response(ServiceUnavailable(), rid)
        except Exception as exc:
            # Frames only: an exception's message can quote data (SQL parameters, upstream bodies).
            frames = " <- ".join(
                f"{f.name}@{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"
                for f in reversed(traceback.extract_tb(exc.__traceback__))
            )
            log.error("unhandled %s in %s (request %s): %s", type(exc).__name__, name, rid, frames)
            return error_response(InternalError("Internal server error."), rid)

    handle.__name__ = f"handle_{name}"
    return handle


def after_request(response: Response) -> Response:
    """Robyn's own answers (unknown route, wrong method) get an id and, for 404, the OpenAI error body."""
    if response.headers.contains("x-request-id"):
        return response
    rid = str(uuid.uuid4())
    response.headers.set("x-request-id", rid)
    if response.status_code == 404:
        response.description = NotFound("Unknown path.").body()
        response.headers.set("content-type", "application/json")
    return response
