"""One error tree for both planes: each error knows its HTTP status, OpenAI `type` and `code`.

DragonflyError
 ├── InvalidRequest            400 invalid_request
 │    └── ContextLengthExceeded 400 context_length_exceeded
 ├── InvalidApiKey             401 invalid_api_key
 ├── IpNotAllowed              403 ip_not_allowed
 ├── PermissionDenied          403 permission_denied
 ├── NotFound                  404 not_found
 ├── ModelNotFound             404 model_not_found
 ├── RequestTimeout            408 request_timeout        (connection: close)
 ├── Conflict                  409 conflict
 ├── RequestTooLarge           413 request_too_large
 ├── InsufficientBalance       402 insufficient_balance   (x-should-retry: false)
 ├── BudgetExceeded            429 budget_exceeded        (x-should-retry: false)
 ├── RateLimited               429 rate_limited           (retry-after)
 ├── NoListingMatchesProfile   503 no_listing_matches_profile
 ├── UpstreamError             502 upstream_error
 ├── UpstreamTimeout           504 upstream_timeout
 └── ServiceUnavailable        503 service_unavailable    (retry-after)

Messages are written for the caller and never contain a secret, SQL or a stack trace.
"""

from __future__ import annotations

from typing import ClassVar

import orjson


class DragonflyError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    def response_headers(self) -> list[tuple[str, str]]:
        return list(self.headers.items())


class InvalidRequest(DragonflyError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class InvalidApiKey(DragonflyError):
    status, type, code = 401, "authentication_error", "invalid_api_key"

    def __init__(self, message: str = "Invalid API key provided.", **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]


class IpNotAllowed(DragonflyError):
    status, type, code = 403, "permission_error", "ip_not_allowed"


class PermissionDenied(DragonflyError):
    status, type, code = 403, "permission_error", "permission_denied"


class NotFound(DragonflyError):
    status, type, code = 404, "not_found_error", "not_found"


class ModelNotFound(DragonflyError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class RequestTimeout(DragonflyError):
    """The request body did not arrive within its deadline (gateway/http.py `read_body`). The connection
    is closed after the answer: the rest of that body must not be read as a next request."""

    status, type, code = 408, "invalid_request_error", "request_timeout"

    def __init__(self, message: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.headers.setdefault("connection", "close")


class Conflict(DragonflyError):
    status, type, code = 409, "invalid_request_error", "conflict"


class RequestTooLarge(DragonflyError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class _NoRetry(DragonflyError):
    def __init__(self, message: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.headers.setdefault("x-should-retry", "false")


class InsufficientBalance(_NoRetry):
    status, type, code = 402, "insufficient_quota", "insufficient_balance"


class BudgetExceeded(_NoRetry):
    status, type, code = 429, "insufficient_quota", "budget_exceeded"


class RateLimited(DragonflyError):
    status, type, code = 429, "rate_limit_error", "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int = 1, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.headers.setdefault("retry-after", str(max(1, retry_after_s)))


class NoListingMatchesProfile(DragonflyError):
    status, type, code = 503, "service_unavailable_error", "no_listing_matches_profile"


class UpstreamError(DragonflyError):
    status, type, code = 502, "upstream_error", "upstream_error"


class UpstreamTimeout(DragonflyError):
    status, type, code = 504, "upstream_error", "upstream_timeout"


class ServiceUnavailable(DragonflyError):
    status, type, code = 503, "service_unavailable_error", "service_unavailable"

    def __init__(self, message: str = "Service temporarily unavailable.", **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.headers.setdefault("retry-after", "1")


class InternalError(DragonflyError):
    status, type, code = 500, "server_error", "internal_error"


class InvalidCredentials(DragonflyError):
    """Login with an unknown email or a wrong password (one message for both)."""

    status, type, code = 401, "authentication_error", "invalid_credentials"

    def __init__(self, message: str = "Invalid email or password.", **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
