"""`POST /api/admin/credits` with an `Idempotency-Key`, over HTTP against a real control plane on both
storage backends: a retried credit (its answer lost, or racing the first call) is made once; the same
key for another credit is refused; keys are the operator's own; a call that failed stored nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from control_plane_support import ControlPlane, assert_error

KEY = "invoice-1042/credit"


def _buyer(api: ControlPlane, address: str) -> tuple[str, str]:
    session = api.signup_verified(address)
    return session, str(api.call("GET", "/api/auth/me", session).json()["id"])


def _credit(api: ControlPlane, operator: str, body: dict[str, Any], key: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.call("POST", "/api/admin/credits", operator, json=body, headers=headers)


def _credits(api: ControlPlane, buyer: str) -> list[dict[str, Any]]:
    lines = api.call("GET", "/api/billing/transactions", buyer).json()["data"]
    return [t for t in lines if t["kind"] == "operator_credit"]


def _available(api: ControlPlane, buyer: str) -> str:
    return str(api.call("GET", "/api/billing/balance", buyer).json()["available_usd"])


def test_a_retried_credit_is_made_once_and_answered_as_the_first(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "retry@example.com")
    operator = api.make_operator("ops@example.com")
    body = {"account_id": buyer_id, "amount_cents": 250, "note": "invoice 1042"}

    first = _credit(api, operator, body, KEY)
    assert first.status_code == 201, first.text
    assert first.headers["idempotent-replayed"] == "false"
    assert first.json()["balance_usd"] == "2.600000"  # the trial's 0.10 and this credit

    again = _credit(api, operator, body, KEY)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # the first credit's answer, its balance as it was then
    assert _available(api, buyer) == "2.600000"
    assert len(_credits(api, buyer)) == 1

    # Another key is another credit.
    other = _credit(api, operator, body, KEY + "-2")
    assert other.status_code == 201 and other.headers["idempotent-replayed"] == "false"
    assert other.json()["id"] != first.json()["id"]
    assert _available(api, buyer) == "5.100000"


def test_the_same_key_for_another_credit_is_refused_and_changes_nothing(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "mismatch@example.com")
    operator = api.make_operator("ops@example.com")
    body = {"account_id": buyer_id, "amount_cents": 250, "note": "invoice 1042"}
    assert _credit(api, operator, body, KEY).status_code == 201
    _, someone_else = _buyer(api, "else@example.com")
    for changed in (
        {**body, "amount_cents": 251},
        {**body, "note": "invoice 1043"},
        {**body, "account_id": someone_else},
    ):
        err = assert_error(_credit(api, operator, changed, KEY), 409, "conflict")
        assert err["param"] == "Idempotency-Key"
        assert KEY not in err["message"]  # the key is the caller's own text: never echoed
    assert _available(api, buyer) == "2.600000"
    assert len(_credits(api, buyer)) == 1


def test_keys_are_each_operators_own(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "two-ops@example.com")
    body = {"account_id": buyer_id, "amount_cents": 100, "note": "goodwill"}
    for address in ("ops-a@example.com", "ops-b@example.com"):
        resp = _credit(api, api.make_operator(address), body, KEY)
        assert resp.status_code == 201 and resp.headers["idempotent-replayed"] == "false"
    assert len(_credits(api, buyer)) == 2


def test_concurrent_retries_make_one_credit(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "race@example.com")
    operator = api.make_operator("ops@example.com")
    body = {"account_id": buyer_id, "amount_cents": 700, "note": "race"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _credit(api, operator, body, KEY), range(8)))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.headers["idempotent-replayed"] for a in answers) == ["false"] + ["true"] * 7
    assert _available(api, buyer) == "7.100000"
    assert len(_credits(api, buyer)) == 1


def test_a_call_that_failed_stored_nothing_and_bad_keys_are_refused(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "failed@example.com")
    operator = api.make_operator("ops@example.com")
    missing = {"account_id": "00000000-0000-4000-8000-000000000000", "amount_cents": 300, "note": "typo"}
    assert_error(_credit(api, operator, missing, KEY), 404, "not_found")
    # The same key, now for the right account: a credit, not a conflict with the failed call.
    fixed = _credit(api, operator, {**missing, "account_id": buyer_id}, KEY)
    assert fixed.status_code == 201 and fixed.headers["idempotent-replayed"] == "false"

    body = {"account_id": buyer_id, "amount_cents": 1, "note": "bad key"}
    for bad in ("k" * 256, "tab\tinside"):
        err = assert_error(_credit(api, operator, body, bad), 400, "invalid_request")
        assert err["param"] == "Idempotency-Key"
    assert _available(api, buyer) == "3.100000"


def test_without_a_key_each_call_is_a_credit(api: ControlPlane) -> None:
    buyer, buyer_id = _buyer(api, "nokey@example.com")
    operator = api.make_operator("ops@example.com")
    body = {"account_id": buyer_id, "amount_cents": 100, "note": "each"}
    for _ in range(2):
        resp = _credit(api, operator, body, None)
        assert resp.status_code == 201 and "idempotent-replayed" not in resp.headers
    assert len(_credits(api, buyer)) == 2
