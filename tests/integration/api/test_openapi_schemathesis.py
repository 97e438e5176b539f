"""Schemathesis over the control plane's own OpenAPI description (`GET /api/openapi.json`, made from the
route table by api/openapi.py), against a running control plane with real credentials.

Every operation gets generated requests, valid and invalid (bodies, query and path parameters), sent with
a session of a verified account that buys and sells (an operator's session on `/api/admin/*`). Calls on
one object (`/api/keys/{id}`, `/v1/market/listings/{id}`…) are aimed at a real object of that account, so
the generated bodies reach the handlers' checks past the 404. Every answer, to a valid or an invalid
request, must be: no 5xx; a status code, content type, headers (`x-request-id`) and body the description
declares (errors: the OpenAI envelope with a code of that status). Not checked: that every request the
schema calls invalid is refused (pydantic's lax mode takes `false` for 0, an empty query value counts as
absent), nor that every valid one succeeds (random ids are 404s).

Kept to well under a minute per backend: a few examples per operation, derandomized, no example database.
Inputs found by hand or by earlier runs are pinned in EDGES below."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from control_plane_support import ControlPlane, start_control_plane
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.processes import ProcessGroup

from dragonfly.api.openapi import build_document

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The document the control plane serves (test_served_description_is_the_route_tables checks it is this one).
schema = schemathesis.openapi.from_dict(build_document())


@dataclass(frozen=True)
class Target:
    api: ControlPlane
    trader: str  # session of a verified account that buys and sells
    operator: str  # session of an operator
    # Path template prefix -> an object of the trader's that calls on one object are aimed at.
    objects: dict[str, str]

    def headers(self, path: str) -> dict[str, str]:
        token = self.operator if path.startswith("/api/admin/") else self.trader
        return {"Authorization": f"Bearer {token}"}

    def aim(self, case: Any) -> None:
        """Point a call on one object at a real one (not a delete, which would leave the rest nothing, nor a
        probe, which calls the seller's upstream)."""
        path = case.operation.path
        if (
            case.method.upper() == "DELETE"
            or path.endswith("/probe")
            or "id" not in (case.path_parameters or {})
        ):
            return
        for prefix, object_id in self.objects.items():
            if path.startswith(prefix):
                case.path_parameters["id"] = object_id
                return


def _target(api: ControlPlane) -> Target:
    trader = api.signup_verified("trader@fuzz.test")
    operator = api.make_operator("operator@fuzz.test")

    def made(path: str, body: dict[str, Any]) -> str:
        resp = api.call("POST", path, trader, json=body)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    key = made("/api/keys", {"name": "fuzz"})
    profile = made("/api/routing/profiles", {"name": "fuzz", "strategy": "balanced"})
    # Port 9 (discard) on loopback: nothing listens, so the listing's admission probe fails at once.
    pool = made("/v1/pool/keys", {"provider": "custom", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"})
    listing = made(
        "/v1/market/listings",
        {
            "pool_key_id": pool,
            "model": "fuzz/echo-1",
            "input_price_per_mtok": "1",
            "output_price_per_mtok": "2",
        },
    )
    objects = {
        "/api/keys/": key,
        "/api/routing/profiles/": profile,
        "/v1/market/listings/": listing,
        "/api/admin/listings/": listing,
    }
    return Target(api=api, trader=trader, operator=operator, objects=objects)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One control plane for every operation of the module (one per backend)."""
    tmp = tmp_path_factory.mktemp(f"openapi-{request.param}")
    processes = ProcessGroup(tmp / "proc-logs")
    failed_before = request.session.testsfailed
    dropped: list[str] = []
    try:
        if request.param == "sqlite":
            database_url = f"sqlite:///{tmp / 'df.db'}"
        else:
            cluster = request.getfixturevalue("pg_cluster")
            name = cluster.create_database()
            dropped.append(name)
            database_url = cluster.url(name)
        yield _target(start_control_plane(processes, database_url, Path(tmp) / "data"))
    finally:
        processes.stop_all()
        if request.session.testsfailed > failed_before:
            processes.dump()
        for name in dropped:
            request.getfixturevalue("pg_cluster").drop_database(name)


def test_served_description_is_the_route_tables(target: Target) -> None:
    for path in ("/api/openapi.json", "/api/docs"):
        resp = target.api.call("GET", path)
        assert resp.status_code == 200 and resp.headers.get("x-request-id"), (path, resp.status_code)
    served = target.api.call("GET", "/api/openapi.json")
    assert served.headers["content-type"] == "application/json"
    assert served.json() == build_document()
    page = target.api.call("GET", "/api/docs")
    assert page.headers["content-type"].startswith("text/html") and "openapi.json" in page.text


def _multipart_without_boundary(case: Any) -> bool:
    """`Content-Type: multipart/form-data` without a boundary: Robyn (0.88) fails to parse the request in its
    Rust server and answers a bare 500 `Internal server error` (text/plain, no `x-request-id`) before any of
    the app's code, middleware included, runs. A Robyn limitation, not the route table's."""
    content_type = str((case.headers or {}).get("Content-Type", "")).lower()
    return content_type.startswith("multipart/") and "boundary=" not in content_type


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_description(case: Any, target: Target) -> None:
    if _multipart_without_boundary(case):
        return  # Robyn's own request parser answers 500 before the app sees it (see the function)
    target.aim(case)
    case.call_and_validate(
        base_url=target.api.origin, headers=target.headers(case.operation.path), checks=CHECKS, timeout=30
    )


# Inputs that were answered with 500 before (the generator, given few examples, may not reach them again):
# prices that overflowed or underflowed the decimal context, cursors past 64 bits, times that an offset
# carries out of years 1-9999, and NUL characters, which PostgreSQL cannot store.
EDGES = [
    (
        "POST",
        "/api/routing/profiles",
        {"name": "p", "strategy": "balanced", "max_input_price_per_mtok": "1e999999"},
    ),
    (
        "POST",
        "/api/routing/profiles",
        {"name": "p", "strategy": "balanced", "max_input_price_per_mtok": "1e-99999999"},
    ),
    ("POST", "/api/routing/profiles", {"name": "nul\x00", "strategy": "balanced"}),
    ("PATCH", "/api/keys/{key}", {"name": "nul\x00"}),
    ("GET", "/api/billing/transactions?cursor=99999999999999999999999", None),
    ("GET", "/v1/market/settlements?cursor=-99999999999999999999999", None),
    ("GET", "/v1/market/earnings/summary?from=0001-01-01T00:00:00%2B14:00", None),
    (
        "GET",
        "/v1/market/earnings/timeseries?from=9999-12-31T23:59:59-14:00&to=9999-12-31T23:59:59-14:00",
        None,
    ),
    (
        "POST",
        "/api/management-keys",
        {"name": "m", "mgmt_scope": "full", "expires_at": "9999-12-31T23:59:59-14:00"},
    ),
    ("GET", "/v1/market/listings/%00", None),
    ("GET", "/api/admin/reference-prices/a%00b", None),
    ("GET", "/v1/market/trade-reviews?cursor=%00", None),
    ("GET", "/api/routing/profiles/%00", None),
    ("DELETE", "/api/keys/%00", None),
    ("DELETE", "/v1/pool/keys/%00", None),
    ("GET", "/v1/market/contracts/%00/checks", None),
    ("POST", "/v1/market/contracts/%00/reverify", None),
    ("GET", "/api/admin/listings/%00/quality", None),
    ("POST", "/api/admin/listings/%00/suspend", None),
    ("GET", "/api/admin/routing/activity?model=%00&profile_id=%00", None),
    ("POST", "/api/admin/flagged-trades/%00/resolve", {"action": "dismiss"}),
    ("POST", "/api/admin/payouts/%00/mark-paid", {}),
    ("GET", "/v1/market/payouts?cursor=%00", None),
    ("POST", "/v1/market/payouts", {"amount_usd": "1e999999"}),
    ("POST", "/v1/market/payouts", {"amount_usd": "1e-99999999"}),
    ("POST", "/api/auth/login", {"email": "nul\x00@example.com", "password": "x"}),
    ("POST", "/api/auth/verify", {"token": "nul\x00"}),
    ("POST", "/v1/pool/keys", {"provider": "nul\x00", "api_key": "k"}),
    (
        "POST",
        "/api/admin/credits",
        {"account_id": "00000000-0000-0000-0000-000000000000", "amount_cents": 1, "note": "\x00"},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), EDGES)
def test_edge_inputs_are_refused_not_failed(target: Target, method: str, path: str, body: Any) -> None:
    path = path.format(key=target.objects["/api/keys/"])
    token = target.operator if path.startswith("/api/admin/") else target.trader
    resp = target.api.call(method, path, token, json=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert set(resp.json()) == {"error"} and resp.headers.get("x-request-id"), resp.text
