"""Operator suspension over HTTP against a real control plane (both storage backends) and a real
DemoSeller: who may call the operator routes, suspend (status, contract, change sequence, what the seller
sees and may do), and unsuspend (a real admission probe decides)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from control_plane_support import ControlPlane, assert_error, wait_until

from dragonfly.demo.seller import DemoSeller

ADMIN_ROUTES = (
    ("POST", "/api/admin/listings/{id}/suspend"),
    ("POST", "/api/admin/listings/{id}/unsuspend"),
    ("GET", "/api/admin/flagged-trades"),
    ("GET", "/api/admin/routing/activity"),
)


def _active_listing(api: ControlPlane, seller: str, demo: DemoSeller) -> dict[str, Any]:
    """A pool key on `demo` and a listing on it, once its admission probe has made it active."""
    pool = api.call(
        "POST",
        "/v1/pool/keys",
        seller,
        json={"provider": "custom", "base_url": demo.base_url, "api_key": demo.api_key},
    )
    assert pool.status_code == 201, pool.text
    created = api.call(
        "POST",
        "/v1/market/listings",
        seller,
        json={
            "pool_key_id": pool.json()["id"],
            "model": "demo/echo-1",
            "upstream_model": "echo-1",
            "input_price_per_mtok": "1",
            "output_price_per_mtok": "2",
        },
    )
    assert created.status_code == 201, created.text
    lid = created.json()["id"]
    return dict(
        wait_until(
            lambda: (
                body
                if (body := api.call("GET", f"/v1/market/listings/{lid}", seller).json())["status"]
                == "active"
                else None
            )
        )
    )


def _seq(api: ControlPlane) -> int:
    return int(api.query("SELECT seq FROM change_seq WHERE id = 1")[0]["seq"])


def _contract(api: ControlPlane, seller: str, listing_id: str) -> dict[str, Any]:
    data = api.call("GET", f"/v1/market/listings/{listing_id}/contracts", seller).json()["data"]
    assert len(data) == 1
    return dict(data[0])


def test_operator_routes_refuse_everyone_but_an_operator_session(
    api: ControlPlane, demo_seller: DemoSeller
) -> None:
    seller = api.signup_verified("seller@example.com")
    listing = _active_listing(api, seller, demo_seller)
    seller_key = api.call(
        "POST", "/api/management-keys", seller, json={"name": "s", "mgmt_scope": "seller"}
    ).json()["key"]
    buyer_key = api.call("POST", "/api/keys", seller, json={"name": "b"}).json()["key"]
    operator = api.make_operator("ops@example.com")
    operator_full_key = api.call(
        "POST", "/api/management-keys", operator, json={"name": "f", "mgmt_scope": "full"}
    ).json()["key"]

    for method, template in ADMIN_ROUTES:
        path = template.format(id=listing["id"])
        # A non-operator session (buyer and seller alike), a seller key, even an operator's full key.
        for credential in (seller, seller_key, operator_full_key):
            assert_error(api.call(method, path, credential, json={}), 403, "permission_denied")
        # A buyer API key is no management credential at all.
        assert_error(api.call(method, path, buyer_key, json={}), 401, "invalid_api_key")
        assert_error(api.call(method, path, json={}), 401, "invalid_api_key")
    # Nothing changed.
    assert api.call("GET", f"/v1/market/listings/{listing['id']}", seller).json()["status"] == "active"


def test_suspend_makes_the_listing_unroutable_and_the_seller_cannot_lift_it(
    api: ControlPlane, demo_seller: DemoSeller
) -> None:
    seller = api.signup_verified("seller@example.com")
    listing = _active_listing(api, seller, demo_seller)
    lid = listing["id"]
    operator = api.make_operator("ops@example.com")
    operator_id = api.call("GET", "/api/auth/me", operator).json()["id"]
    before = _seq(api)

    resp = api.call("POST", f"/api/admin/listings/{lid}/suspend", operator, json={"reason": "inflated usage"})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["listing"]["status"] == "suspended" and out["listing"]["contract_status"] == "suspended"
    assert out["contract"]["status"] == "suspended"
    assert out["contract"]["reason"] == "suspended by the operator: inflated usage"
    suspension = out["suspension"]
    assert suspension["reason"] == "inflated usage" and suspension["suspended_by"] == operator_id
    assert suspension["previous_status"] == "active" and suspension["lifted_at"] is None
    assert suspension["suspended_at"].endswith("Z")
    # The data planes reload: the change sequence moved with the write.
    assert _seq(api) > before
    row = api.query("SELECT status, contract_status FROM listings WHERE id = $1", lid)[0]
    assert (row["status"], row["contract_status"]) == ("suspended", "suspended")

    # The seller sees it, on the listing and on its contract (status, since, reason) and check history.
    assert api.call("GET", f"/v1/market/listings/{lid}", seller).json()["status"] == "suspended"
    contract = _contract(api, seller, lid)
    assert contract["status"] == "suspended" and contract["since"] == suspension["suspended_at"]
    assert contract["reason"] == "suspended by the operator: inflated usage"
    checks = api.call("GET", f"/v1/market/contracts/{contract['id']}/checks", seller).json()["data"]
    assert checks[0]["kind"] == "operator:suspend" and checks[0]["passed"] is False

    # The seller can neither resume it nor move it through a price review, and a passing probe of its
    # own does not lift it.
    for patch in ({"status": "active"}, {"status": "paused"}, {"output_price_per_mtok": "200"}):
        assert_error(api.call("PATCH", f"/v1/market/listings/{lid}", seller, json=patch), 409, "conflict")
    probe = api.call("POST", f"/v1/market/listings/{lid}/probe", seller).json()
    assert probe["passed"] is True
    assert api.call("GET", f"/v1/market/listings/{lid}", seller).json()["status"] == "suspended"
    assert _contract(api, seller, lid)["status"] == "suspended"
    # Deleting the pool key does not turn it into a paused (resumable) listing either.
    assert api.call("DELETE", f"/v1/pool/keys/{listing['pool_key_id']}", seller).status_code == 204
    assert api.call("GET", f"/v1/market/listings/{lid}", seller).json()["status"] == "suspended"

    assert_error(api.call("POST", f"/api/admin/listings/{lid}/suspend", operator, json={}), 409, "conflict")
    # ... and with its pool key gone, its probe fails: it stays suspended.
    kept = api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator)
    assert kept.status_code == 200 and kept.json()["unsuspended"] is False
    assert kept.json()["reason"] == "pool_key: the listing's pool key was deleted"


def test_unsuspend_runs_the_probe_and_lifts_only_when_it_passes(
    api: ControlPlane, demo_seller_factory: Callable[..., DemoSeller]
) -> None:
    demo = demo_seller_factory()
    seller = api.signup_verified("seller@example.com")
    lid = _active_listing(api, seller, demo)["id"]
    operator = api.make_operator("ops@example.com")
    operator_id = api.call("GET", "/api/auth/me", operator).json()["id"]
    assert api.call("POST", f"/api/admin/listings/{lid}/suspend", operator).status_code == 200
    runs_before = len(api.call("GET", f"/v1/market/listings/{lid}/probe-runs", seller).json()["data"])

    demo.config.fail_status = 500
    resp = api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["unsuspended"] is False
    assert out["reason"] == "chat_completion: unexpected HTTP 500"
    assert out["probe_run"]["passed"] is False
    assert out["probe_run"]["checks"][-1] == {
        "kind": "chat_completion",
        "passed": False,
        "detail": "unexpected HTTP 500",
    }
    assert out["listing"]["status"] == "suspended" and out["contract"]["status"] == "suspended"
    assert out["suspension"]["lifted_at"] is None
    assert _contract(api, seller, lid)["reason"] == "suspended by the operator"
    runs = api.call("GET", f"/v1/market/listings/{lid}/probe-runs", seller).json()["data"]
    assert len(runs) == runs_before + 1 and runs[0]["id"] == out["probe_run"]["id"]

    demo.config.fail_status = None
    before = _seq(api)
    resp = api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["unsuspended"] is True and out["reason"] is None and out["probe_run"]["passed"] is True
    assert out["listing"]["status"] == "active" and out["listing"]["contract_status"] == "active"
    assert out["suspension"]["lifted_by"] == operator_id
    assert out["suspension"]["lift_probe_run_id"] == out["probe_run"]["id"]
    assert _seq(api) > before
    contract = _contract(api, seller, lid)
    assert contract["status"] == "active" and contract["reason"] is None
    # The seller has its listing back.
    paused = api.call("PATCH", f"/v1/market/listings/{lid}", seller, json={"status": "paused"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"

    assert_error(api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator), 409, "conflict")


def test_a_paused_listing_comes_back_paused(api: ControlPlane, demo_seller: DemoSeller) -> None:
    seller = api.signup_verified("seller@example.com")
    lid = _active_listing(api, seller, demo_seller)["id"]
    assert api.call("PATCH", f"/v1/market/listings/{lid}", seller, json={"status": "paused"}).ok
    operator = api.make_operator("ops@example.com")
    out = api.call("POST", f"/api/admin/listings/{lid}/suspend", operator, json={"reason": "r"}).json()
    assert out["suspension"]["previous_status"] == "paused" and out["listing"]["status"] == "suspended"
    out = api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator).json()
    assert out["unsuspended"] is True
    assert (out["listing"]["status"], out["listing"]["contract_status"]) == ("paused", "active")


@pytest.mark.parametrize(
    ("body", "param"),
    [({"reason": ""}, "reason"), ({"reason": "x" * 501}, "reason"), ({"why": "x"}, "why")],
)
def test_suspend_validates_its_body(
    api: ControlPlane, demo_seller: DemoSeller, body: dict[str, Any], param: str
) -> None:
    seller = api.signup_verified("seller@example.com")
    lid = _active_listing(api, seller, demo_seller)["id"]
    operator = api.make_operator("ops@example.com")
    resp = api.call("POST", f"/api/admin/listings/{lid}/suspend", operator, json=body)
    assert assert_error(resp, 400, "invalid_request")["param"] == param
    assert_error(
        api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator, json={"force": True}),
        400,
        "invalid_request",
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(api.call("POST", f"/api/admin/listings/{missing}/suspend", operator), 404, "not_found")
    assert_error(api.call("POST", f"/api/admin/listings/{missing}/unsuspend", operator), 404, "not_found")
    assert_error(api.call("POST", f"/api/admin/listings/{lid}/unsuspend", operator), 409, "conflict")
    assert api.call("GET", f"/v1/market/listings/{lid}", seller).json()["status"] == "active"
