"""Credentials and scopes on management routes: sessions, management keys, buyer keys, operators."""

from __future__ import annotations

from control_plane_support import ControlPlane, assert_error


def test_buyer_key_is_refused_on_management_routes(api: ControlPlane) -> None:
    session = api.signup_verified("buyer@example.com")
    key = api.call("POST", "/api/keys", session, json={"name": "app"}).json()["key"]
    assert key.startswith("sk-df-")
    for path in ("/api/keys", "/api/auth/me", "/v1/pool/keys", "/api/billing/balance"):
        assert_error(api.call("GET", path, key), 401, "invalid_api_key")
    assert_error(api.call("GET", "/api/keys", "sk-df-" + "A" * 43), 401, "invalid_api_key")
    assert_error(api.call("GET", "/api/keys"), 401, "invalid_api_key")


def test_management_key_scopes_and_minting_limits(api: ControlPlane) -> None:
    session = api.signup_verified("owner@example.com")
    seller = api.call("POST", "/api/management-keys", session, json={"name": "s", "mgmt_scope": "seller"})
    assert seller.status_code == 201, seller.text
    seller_key = seller.json()["key"]
    assert seller.json()["mgmt_scope"] == "seller" and seller.json()["expires_at"] is None

    assert_error(api.call("GET", "/api/keys", seller_key), 403, "permission_denied")
    assert_error(api.call("GET", "/api/billing/balance", seller_key), 403, "permission_denied")
    assert api.call("GET", "/v1/pool/keys", seller_key).status_code == 200
    assert api.call("GET", "/api/auth/me", seller_key).json()["email"] == "owner@example.com"
    # Only a session or a full key manages management keys.
    assert_error(
        api.call("POST", "/api/management-keys", seller_key, json={"name": "x", "mgmt_scope": "seller"}),
        403,
        "permission_denied",
    )

    buyer_key = api.call(
        "POST", "/api/management-keys", session, json={"name": "b", "mgmt_scope": "buyer"}
    ).json()
    assert api.call("GET", "/api/keys", buyer_key["key"]).status_code == 200
    assert_error(api.call("GET", "/v1/market/listings", buyer_key["key"]), 403, "permission_denied")

    full = api.call(
        "POST",
        "/api/management-keys",
        session,
        json={"name": "f", "mgmt_scope": "full", "expires_at": "2099-01-01T00:00:00Z"},
    ).json()
    # A full key cannot mint a longer-lived key; without an expiry the child inherits the parent's.
    longer = api.call(
        "POST",
        "/api/management-keys",
        full["key"],
        json={"name": "g", "mgmt_scope": "full", "expires_at": "2100-01-01T00:00:00Z"},
    )
    assert_error(longer, 403, "permission_denied")
    child = api.call("POST", "/api/management-keys", full["key"], json={"name": "h", "mgmt_scope": "buyer"})
    assert child.status_code == 201 and child.json()["expires_at"] == full["expires_at"]
    past = api.call(
        "POST",
        "/api/management-keys",
        session,
        json={"name": "p", "mgmt_scope": "buyer", "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert_error(past, 400, "invalid_request")

    listed = api.call("GET", "/api/management-keys", session).json()["data"]
    assert {k["name"] for k in listed} == {"s", "b", "f", "h"}
    assert all("key" not in k for k in listed)
    assert api.call("DELETE", f"/api/management-keys/{seller.json()['id']}", session).status_code == 204
    assert_error(api.call("GET", "/v1/pool/keys", seller_key), 401, "invalid_api_key")


def test_other_accounts_objects_are_not_found(api: ControlPlane) -> None:
    alice = api.signup_verified("alice@example.com")
    mallory = api.signup_verified("mallory@example.com")
    key = api.call("POST", "/api/keys", alice, json={"name": "alice-key"}).json()
    profile = api.call(
        "POST", "/api/routing/profiles", alice, json={"name": "p", "strategy": "cost_first"}
    ).json()

    assert_error(
        api.call("PATCH", f"/api/keys/{key['id']}", mallory, json={"name": "stolen"}), 404, "not_found"
    )
    assert_error(api.call("DELETE", f"/api/keys/{key['id']}", mallory), 404, "not_found")
    assert_error(api.call("GET", f"/api/routing/profiles/{profile['id']}", mallory), 404, "not_found")
    assert_error(
        api.call("POST", "/api/keys", mallory, json={"routing_profile_id": profile["id"]}), 404, "not_found"
    )
    assert api.call("GET", "/api/keys", mallory).json()["data"] == []
    # Alice's key is untouched.
    assert api.call("GET", "/api/keys", alice).json()["data"][0]["name"] == "alice-key"


def test_admin_credit_needs_an_operator_session(api: ControlPlane) -> None:
    buyer = api.signup_verified("buyer@example.com")
    buyer_id = api.call("GET", "/api/auth/me", buyer).json()["id"]
    body = {"account_id": buyer_id, "amount_cents": 250, "note": "welcome"}
    assert_error(api.call("POST", "/api/admin/credits", buyer, json=body), 403, "permission_denied")

    operator = api.make_operator("ops@example.com")
    full_key = api.call(
        "POST", "/api/management-keys", operator, json={"name": "k", "mgmt_scope": "full"}
    ).json()
    assert_error(api.call("POST", "/api/admin/credits", full_key["key"], json=body), 403, "permission_denied")

    resp = api.call("POST", "/api/admin/credits", operator, json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["balance_usd"] == "2.600000"
    assert api.call("GET", "/api/billing/balance", buyer).json()["available_usd"] == "2.600000"
    kinds = [t["kind"] for t in api.call("GET", "/api/billing/transactions", buyer).json()["data"]]
    assert kinds == ["operator_credit", "trial_credit"]
    missing = {**body, "account_id": "00000000-0000-4000-8000-000000000000"}
    assert_error(api.call("POST", "/api/admin/credits", operator, json=missing), 404, "not_found")
    assert_error(
        api.call("POST", "/api/admin/credits", operator, json={**body, "amount_cents": 0}),
        400,
        "invalid_request",
    )
