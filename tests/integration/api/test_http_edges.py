"""Robyn gaps covered by the control plane: body limit, request ids, no public docs, OpenAI-shaped 404s."""

from __future__ import annotations

import uuid

from control_plane_support import ControlPlane, assert_error


def test_body_too_large_is_413(api: ControlPlane) -> None:
    session = api.signup_verified("big@example.com")
    body = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    resp = api.call("POST", "/api/keys", session, data=body, headers={"content-type": "application/json"})
    assert_error(resp, 413, "request_too_large")
    public = api.call("POST", "/api/auth/signup", data=body, headers={"content-type": "application/json"})
    assert_error(public, 413, "request_too_large")
    assert api.call("GET", "/api/keys", session).json()["data"] == []


def test_request_ids_docs_and_unknown_paths(api: ControlPlane) -> None:
    first = api.call("GET", "/api/auth/me")
    second = api.call("GET", "/api/auth/me")
    assert uuid.UUID(first.headers["x-request-id"]) != uuid.UUID(second.headers["x-request-id"])
    forwarded = "6d1f0c1e-4b0a-4a59-9a43-0d7a5b1f1a11"
    echoed = api.call("GET", "/api/auth/me", headers={"x-request-id": forwarded})
    assert echoed.headers["x-request-id"] == forwarded
    for path in ("/docs", "/openapi.json", "/api/nope"):
        assert_error(api.call("GET", path), 404, "not_found")
    login = api.call("POST", "/api/auth/login", json={"email": "a@b.co", "password": "p", "extra": True})
    assert_error(login, 400, "invalid_request")
