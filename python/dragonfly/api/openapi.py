"""The control plane's OpenAPI 3.1 description, made from the route table and the pydantic request bodies:
nothing here is kept by hand per route.

From each `Route` (api/routes.py): the path (Robyn's `:id` becomes `{id}`, a `*model` catch-all becomes
`{model}`, which may contain slashes), the method, the security its `Access` demands (api/auth.py), the
request body (`body=`, the model the handler parses with `call.json`), the query parameters (`query=`,
api/params.py), the optional request headers (`headers=`) and the success status (`status=`). Request
schemas come from pydantic (`models_json_schema`, one generator so nested models share one name each)
and land in `components.schemas`. Success bodies are JSON objects (the handlers return plain dicts);
every error is the `{"error": {message, type, param, code}}` envelope, its possible codes read from the
error tree (errors.py).

Served at `GET /api/openapi.json`, with a small offline reader at `GET /api/docs` (api/docs_page.py);
`add_routes` registers both on the Robyn app.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from robyn import Request, Response, Robyn

from dragonfly.api.auth import Access
from dragonfly.api.dashboard import DASHBOARD_PATH
from dragonfly.api.docs_page import DOCS_HTML
from dragonfly.api.http import MAX_BODY_BYTES, request_id
from dragonfly.api.routes import ROUTES, Route
from dragonfly.api.session_cookies import CSRF_HEADER, SESSION_COOKIE
from dragonfly.errors import DragonflyError
from dragonfly.services.accounts import VERIFY_PAGE_PATH

OPENAPI_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"[:*]([A-Za-z_][A-Za-z0-9_]*)")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Every id in a path is a UUID (ids.py); a catch-all is the rest of the path.
_ID_SCHEMA = {"type": "string", "format": "uuid"}
_REST_SCHEMA = {"type": "string", "minLength": 1}

_TAGS = {
    Access.PUBLIC: "accounts",
    Access.ANY: "accounts",
    Access.BUYER: "buyer",
    Access.KEY_ADMIN: "buyer",
    Access.SELLER: "seller",
    Access.OPERATOR: "operator",
}
_TAG_TEXT = {
    "accounts": "Sign-up, verification, login and the caller's own account.",
    "buyer": "API keys, management keys, routing profiles, usage and billing.",
    "seller": "Pool keys (provider credentials), listings, contracts, probes, earnings, trade reviews and "
    "payouts.",
    "operator": "Operator routes: credits, listing suspension, routing weights, reference prices, trade "
    "reviews and payouts.",
    "meta": "This description, its reader and the pages served beside the API (the dashboard, the "
    "verification page).",
}
# Who may call: alternatives (any one suffices). For a bearer scheme, OpenAPI 3.1 lists required roles.
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.ANY: [{"session": []}, {"sessionCookie": []}, {"managementKey": []}],
    Access.BUYER: [
        {"session": []},
        {"sessionCookie": []},
        {"managementKey": ["buyer"]},
        {"managementKey": ["full"]},
    ],
    Access.SELLER: [
        {"session": []},
        {"sessionCookie": []},
        {"managementKey": ["seller"]},
        {"managementKey": ["full"]},
    ],
    Access.KEY_ADMIN: [{"session": []}, {"sessionCookie": []}, {"managementKey": ["full"]}],
    Access.OPERATOR: [{"session": ["operator"]}, {"sessionCookie": ["operator"]}],
}
_SECURITY_SCHEMES = {
    "session": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A dashboard session: `access_token` from `POST /api/auth/login`. Can do everything a "
        "`full` management key can, plus management-key CRUD; the `operator` role opens `/api/admin/*`.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The browser's session (the dashboard): the HttpOnly cookie `POST /api/auth/session` "
        "sets, taken only when no `Authorization` header is sent. The same rights as `session`; every "
        f"POST, PUT, PATCH or DELETE made with it must carry the session's CSRF token in `{CSRF_HEADER}` "
        "(the `df_csrf` cookie, or `csrf_token` of the login answer), else 403 `permission_denied`.",
    },
    "managementKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A management key (`sk-df-…`, made at `POST /api/management-keys`) with scope "
        "`buyer`, `seller` or `full`; the scope a route needs is listed as its role. Never a buyer "
        "(inference) key.",
    },
}
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Malformed JSON, an invalid field or parameter",
    401: "Missing, unknown, revoked or expired credentials",
    403: "The credential's scope or role does not allow this route, or a cookie session's change lacks its "
    "CSRF token",
    404: "Not found, or not the caller's",
    409: "The object's state does not allow this change",
    413: f"The request body is larger than {MAX_BODY_BYTES} bytes",
    429: "Too many attempts from this address or for this account (abuse limits); retry after `retry-after`",
    503: "Temporarily unavailable (the database); retry",
}
_REQUEST_ID_HEADER = {
    "description": "The request's id (echoes a valid `x-request-id` the caller sent).",
    "required": True,
    "schema": {"type": "string"},
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid", title="ErrorDetail")
    message: str
    type: str
    param: str | None
    code: str


class Error(BaseModel):
    """Every error answer: `{"error": {message, type, param, code}}`, never a stack trace or a secret."""

    model_config = ConfigDict(extra="forbid", title="Error")
    error: ErrorDetail


def openapi_path(path: str) -> str:
    """Robyn's `/a/:id/*rest` as OpenAPI's `/a/{id}/{rest}`."""
    return _PATH_PARAM.sub(r"{\1}", path)


def _path_parameters(path: str) -> Iterator[dict[str, Any]]:
    for segment in path.split("/"):
        if segment.startswith(":"):
            yield {"name": segment[1:], "in": "path", "required": True, "schema": dict(_ID_SCHEMA)}
        elif segment.startswith("*"):
            yield {
                "name": segment[1:],
                "in": "path",
                "required": True,
                "description": "The rest of the path: it may contain `/` (a market model name such as "
                "`deepseek/deepseek-chat`), sent as is or as `%2F`.",
                "schema": dict(_REST_SCHEMA),
            }


def _error_codes() -> dict[int, list[str]]:
    """Status -> the `code` values the error tree (errors.py) answers with at that status."""
    codes: dict[int, set[str]] = {}
    todo: list[type[DragonflyError]] = [DragonflyError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not DragonflyError:
            codes.setdefault(cls.status, set()).add(cls.code)
    return {status: sorted(names) for status, names in codes.items()}


def _error_statuses(route: Route) -> list[int]:
    """The error statuses a route can answer with: the wrapper's (api/http.py), authentication's, and those
    of its inputs and method; `route.errors` adds what these rules cannot see (a login's 401)."""
    statuses = {404, 413, 503, *route.errors}
    if route.access is not Access.PUBLIC:
        statuses |= {401, 403, 429}  # 429: too many bad credentials from the address (services/abuse.py)
    if route.body is not None or route.query or _PATH_PARAM.search(route.path):
        statuses.add(400)
    if route.method in _WRITES:
        statuses.add(409)
    return sorted(statuses)


def _error_responses(codes: dict[int, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in _STATUS_TEXT.items():
        if status < 400:
            continue
        names = codes.get(status, [])
        headers: dict[str, Any] = {"x-request-id": _REQUEST_ID_HEADER}
        if status in (429, 503):
            headers["retry-after"] = {"description": "Seconds to wait.", "schema": {"type": "string"}}
        out[str(status)] = {
            "description": f"{text}. `code`: {', '.join(names)}." if names else f"{text}.",
            "headers": headers,
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": REF.format(model="Error")},
                            {"properties": {"error": {"properties": {"code": {"enum": names}}}}},
                        ]
                    }
                }
            },
        }
    return out


def _success(status: int, content: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _STATUS_TEXT.get(status, "OK"),
        "headers": {"x-request-id": _REQUEST_ID_HEADER},
    }
    if status != 204:
        response["content"] = content or {"application/json": {"schema": {"type": "object"}}}
    return response


def _operation_id(route: Route, taken: set[str]) -> str:
    module = route.handler.__module__.rsplit(".", 1)[-1]
    name = f"{module}.{route.handler.__name__.rstrip('_')}"
    if name in taken:
        name = f"{name}.{route.method.lower()}"
    taken.add(name)
    return name


def _summary(route: Route) -> str | None:
    """The first paragraph of the handler's docstring, when it has one."""
    doc = (route.handler.__doc__ or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split()) if doc else None


def _operation(
    route: Route, body_refs: dict[type[BaseModel], dict[str, Any]], taken: set[str]
) -> dict[str, Any]:
    tag = _TAGS[route.access]
    op: dict[str, Any] = {"operationId": _operation_id(route, taken), "tags": [tag]}
    if (summary := _summary(route)) is not None:
        op["summary"] = summary
    op["security"] = _SECURITY[route.access]
    parameters = list(_path_parameters(route.path))
    parameters += [
        {"name": q.name, "in": "query", "required": False, "description": q.description, "schema": q.schema}
        for q in route.query
    ]
    parameters += [
        {"name": h.name, "in": "header", "required": False, "description": h.description, "schema": h.schema}
        for h in route.headers
    ]
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        required = bool(route.body.model_json_schema().get("required"))
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": body_refs[route.body]}},
        }
    responses: dict[str, Any] = {str(route.status): _success(route.status)}
    for status in _error_statuses(route):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    op["responses"] = responses
    return op


def _meta_paths() -> dict[str, Any]:
    """The pages served beside the route table: the two of `add_routes`, the verification page
    (api/verify_page.py) and the dashboard (api/dashboard/)."""
    public: list[dict[str, list[str]]] = []
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        DASHBOARD_PATH: {
            "get": {
                "operationId": "dashboard.page",
                "summary": "The dashboard (api/dashboard/): sign up, log in, keys, usage, billing, models "
                "and a playground, all through the documented API; its files are under `/dashboard/`.",
                "tags": ["meta"],
                "security": public,
                "responses": {"200": _success(200, html)},
            }
        },
        VERIFY_PAGE_PATH: {
            "get": {
                "operationId": "accounts.verify_page",
                "summary": "The page the verification mail links to (`/verify#token=…`, the token in the "
                "fragment, never sent to the server): its button posts the token to `POST /api/auth/verify`.",
                "tags": ["accounts"],
                "security": public,
                "responses": {"200": _success(200, html)},
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi.document",
                "summary": "This OpenAPI 3.1 description of the control plane.",
                "tags": ["meta"],
                "security": public,
                "responses": {"200": _success(200)},
            }
        },
        DOCS_PATH: {
            "get": {
                "operationId": "openapi.docs",
                "summary": "A readable list of the routes, rendered from this description (offline).",
                "tags": ["meta"],
                "security": public,
                "responses": {"200": _success(200, html)},
            }
        },
    }


def _unique(models: Iterable[type[BaseModel] | None]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {}
    for model in models:
        if model is not None:
            seen.setdefault(model, None)
    return list(seen)


def build_document(routes: Iterable[Route] = ROUTES) -> dict[str, Any]:
    routes = tuple(routes)
    models = _unique([Error, *(r.body for r in routes)])
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    body_refs = {m: refs[(m, "validation")] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(
            route, body_refs, taken
        )
    paths.update(_meta_paths())
    used_tags = {tag for item in paths.values() for op in item.values() for tag in op["tags"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dragonfly control plane",
            "version": "1",
            "description": "Accounts, keys, routing profiles, usage and billing (`/api/*`), the seller "
            "market (`/v1/pool/*`, `/v1/market/*`) and the operator's routes (`/api/admin/*`). Served on the "
            "public port too: the data plane passes these paths through. All bodies are JSON; unknown "
            "fields are refused. Inference (`/v1/chat/completions` and friends) is the data plane's and "
            "is not described here.",
        },
        "tags": [
            {"name": name, "description": text} for name, text in _TAG_TEXT.items() if name in used_tags
        ],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "responses": _error_responses(_error_codes()),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def add_routes(app: Robyn) -> None:
    """Serve the description and its reader; both public (they say what exists, not who holds what)."""
    document = orjson.dumps(build_document())

    def headers(content_type: str, rid: str) -> dict[str, str]:
        return {
            "content-type": content_type,
            "x-request-id": rid,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
        }

    async def openapi_json(request: Request) -> Response:
        return Response(200, headers("application/json", request_id(request.headers)), document)

    async def docs(request: Request) -> Response:
        h = headers("text/html; charset=utf-8", request_id(request.headers))
        # The page's one inline script and style; it fetches only the description beside it.
        h["content-security-policy"] = (
            "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
        )
        return Response(200, h, DOCS_HTML)

    app.add_route("GET", OPENAPI_PATH, openapi_json)
    app.add_route("GET", DOCS_PATH, docs)


__all__ = ["DOCS_PATH", "OPENAPI_PATH", "Error", "add_routes", "build_document", "openapi_path"]
