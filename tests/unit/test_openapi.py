"""The OpenAPI description (api/openapi.py) is valid OpenAPI 3.1, covers the whole route table, and what
the route table declares per route (body model, query parameters, success status) is what the handler's
code does: `call.json(Model)`, `call.query("name")`, `Reply(..., status)`."""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import jsonschema_rs
import pytest

from dragonfly.api.auth import Access
from dragonfly.api.dashboard import DASHBOARD_PATH
from dragonfly.api.docs_page import DOCS_HTML
from dragonfly.api.openapi import DOCS_PATH, OPENAPI_PATH, build_document, openapi_path
from dragonfly.api.routes import ROUTES, Route
from dragonfly.services.accounts import VERIFY_PAGE_PATH

DOC = json.loads(json.dumps(build_document()))  # as served: plain JSON
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            assert method in METHODS, (path, method)
            yield path, method, op


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                assert isinstance(value, str)
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved {ref}"
        node = node[part]
    return node


def test_the_document_is_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert DOC["paths"] and all(path.startswith("/") for path in DOC["paths"])
    # The OpenAPI 3.1 meta-schema that ships with schemathesis (the test extra), when it is importable.
    try:
        from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
    except ImportError:  # pragma: no cover - the structural checks below still run
        return
    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(DOC)]
    assert not errors, errors[:5]


def test_every_ref_resolves_and_every_schema_is_json_schema_2020_12() -> None:
    refs = set(_refs(DOC))
    assert refs
    for ref in refs:
        _resolve(ref)
    for name, schema in DOC["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    used = {ref.rsplit("/", 1)[-1] for ref in refs if ref.startswith("#/components/schemas/")}
    assert used == set(DOC["components"]["schemas"]), "unused or missing component schemas"


def test_every_route_is_described_once_with_its_parameters_and_security() -> None:
    described = {(path, method) for path, method, _ in _operations()}
    routes = {(openapi_path(r.path), r.method.lower()) for r in ROUTES}
    assert len(routes) == len(ROUTES), "a route is in the table twice"
    pages = {(OPENAPI_PATH, "get"), (DOCS_PATH, "get"), (VERIFY_PAGE_PATH, "get"), (DASHBOARD_PATH, "get")}
    assert described == routes | pages
    operation_ids = [op["operationId"] for _, _, op in _operations()]
    assert len(operation_ids) == len(set(operation_ids))
    for route in ROUTES:
        op = DOC["paths"][openapi_path(route.path)][route.method.lower()]
        params = op.get("parameters", [])
        names = [p["name"] for p in params if p["in"] == "path"]
        assert names == re.findall(r"\{([^}]+)\}", openapi_path(route.path)), route.path
        assert all(p["required"] for p in params if p["in"] == "path")
        assert [p["name"] for p in params if p["in"] == "query"] == [q.name for q in route.query]
        assert (route.body is not None) == ("requestBody" in op), route.path
        if route.access is Access.PUBLIC:
            assert op["security"] == [], route.path
        else:
            schemes = {name for requirement in op["security"] for name in requirement}
            assert schemes <= set(DOC["components"]["securitySchemes"]) and schemes, route.path
            assert {"401", "403"} <= set(op["responses"]), route.path
        if route.access is Access.OPERATOR:
            assert op["security"] == [{"session": ["operator"]}, {"sessionCookie": ["operator"]}]
        assert str(route.status) in op["responses"]


def test_catch_all_parameter_says_it_may_hold_slashes() -> None:
    catch_alls = [r for r in ROUTES if "*" in r.path]
    assert catch_alls, "no catch-all route to check"
    for route in catch_alls:
        op = DOC["paths"][openapi_path(route.path)][route.method.lower()]
        (param,) = [p for p in op["parameters"] if p["in"] == "path"]
        assert "/" in param["description"]


def test_errors_are_the_envelope_with_the_codes_of_their_status() -> None:
    envelope = DOC["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"] and envelope["additionalProperties"] is False
    detail = _resolve(envelope["properties"]["error"]["$ref"])
    assert set(detail["required"]) == {"message", "type", "param", "code"}
    for status, response in DOC["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
        assert codes, status
        assert response["headers"]["x-request-id"]["required"] is True
    assert "invalid_request" in DOC["components"]["responses"]["400"]["description"]


def test_prices_are_described_as_decimal_strings() -> None:
    price = DOC["components"]["schemas"]["ReferencePrice"]["properties"]["input_price_per_mtok"]
    assert {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,6})?$"} in price["anyOf"]


def test_the_docs_page_loads_nothing_from_outside() -> None:
    assert "openapi.json" in DOCS_HTML
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", DOCS_HTML)
    assert "http://" not in DOCS_HTML and "https://" not in DOCS_HTML
    assert "innerHTML" not in DOCS_HTML  # text from the description is set with textContent only


# -- the route table's declarations against the handlers' code ------------------------------------------


class _Reads:
    """What a handler does with its request, read from its source (and from the same-module helpers it
    calls): the models given to `call.json`, the names given to `call.query`, the statuses of `Reply`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.module: ModuleType = inspect.getmodule(fn)  # type: ignore[assignment]
        self.bodies: set[Any] = set()
        self.queries: set[str] = set()
        self.statuses: set[int] = set()
        self._seen: set[str] = set()
        self._visit(fn, {})

    def _visit(self, fn: Callable[..., Any], bound: dict[str, str]) -> None:
        if fn.__name__ in self._seen:
            return
        self._seen.add(fn.__name__)
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "call"
            ):
                if func.attr == "json":
                    (arg,) = node.args
                    assert isinstance(arg, ast.Name), ast.dump(arg)
                    self.bodies.add(getattr(self.module, arg.id))
                elif func.attr == "query":
                    (arg,) = node.args
                    if isinstance(arg, ast.Constant):
                        self.queries.add(str(arg.value))
                    else:
                        assert isinstance(arg, ast.Name) and arg.id in bound, ast.dump(arg)
                        self.queries.add(bound[arg.id])
            elif isinstance(func, ast.Name) and func.id == "Reply" and len(node.args) > 1:
                status = node.args[1]
                assert isinstance(status, ast.Constant) and isinstance(status.value, int), ast.dump(status)
                self.statuses.add(status.value)
            elif isinstance(func, ast.Name):
                helper = getattr(self.module, func.id, None)
                if inspect.isfunction(helper) and helper.__module__ == self.module.__name__:
                    params = list(inspect.signature(helper).parameters)
                    literals = {
                        params[i]: str(a.value)
                        for i, a in enumerate(node.args)
                        if isinstance(a, ast.Constant) and i < len(params)
                    }
                    saved = set(self._seen)
                    self._visit(helper, literals)
                    if literals:  # a forwarding helper (`_q(call, "from")`) is read again per call
                        self._seen = saved


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_route_declares_what_its_handler_reads(route: Route) -> None:
    reads = _Reads(route.handler)
    assert reads.bodies == ({route.body} if route.body is not None else set()), "body= differs from call.json"
    assert reads.queries == {q.name for q in route.query}, "query= differs from call.query"
    assert reads.statuses <= {route.status}, "status= differs from the handler's Reply"
    if route.status != 200:
        assert reads.statuses == {route.status}
