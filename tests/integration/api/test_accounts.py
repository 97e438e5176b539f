"""Signup → mailed token → verify (trial credit once) → login → me, over HTTP against a real server."""

from __future__ import annotations

from control_plane_support import PASSWORD, ControlPlane, assert_error


def test_signup_verify_grants_trial_credit_once_and_login_works(api: ControlPlane) -> None:
    resp = api.call("POST", "/api/auth/signup", json={"email": "Alice@Example.com", "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    assert resp.headers["x-request-id"]
    account = resp.json()
    assert account == {"id": account["id"], "email": "alice@example.com", "email_verified": False}

    mail = api.mails()
    assert len(mail) == 1 and mail[0]["To"] == "alice@example.com"
    raw = mail[0].get_payload(decode=True)
    assert isinstance(raw, bytes) and PASSWORD not in raw.decode()
    token = api.verification_token("alice@example.com")
    # Only the hash is stored.
    stored = api.query("SELECT token_hash FROM email_tokens")
    assert len(stored) == 1 and stored[0]["token_hash"] != token and len(stored[0]["token_hash"]) == 64

    session = api.login("alice@example.com")
    me = api.call("GET", "/api/auth/me", session).json()
    assert me == {
        "id": account["id"],
        "email": "alice@example.com",
        "email_verified": False,
        "roles": [],
        "trial_credit_granted": False,
    }
    assert api.call("GET", "/api/billing/balance", session).json()["balance_usd"] == "0.000000"

    verified = api.call("POST", "/api/auth/verify", json={"token": token})
    assert verified.status_code == 200
    assert verified.json() == {"email_verified": True, "trial_credit_granted": True}
    assert_error(api.call("POST", "/api/auth/verify", json={"token": token}), 400, "invalid_request")

    me = api.call("GET", "/api/auth/me", session).json()
    assert me["email_verified"] is True and me["trial_credit_granted"] is True
    balance = api.call("GET", "/api/billing/balance", session).json()
    assert balance == {"balance_usd": "0.100000", "held_usd": "0.000000", "available_usd": "0.100000"}
    txs = api.call("GET", "/api/billing/transactions", session).json()
    assert [(t["kind"], t["amount_usd"]) for t in txs["data"]] == [("trial_credit", "0.100000")]
    assert txs["has_more"] is False and txs["data"][0]["created_at"].endswith("Z")
    # The ledger balances: the trial comes out of the external trial account.
    assert api.query("SELECT SUM(amount) AS s FROM entries")[0]["s"] == 0


def test_duplicate_email_wrong_password_and_bad_tokens_are_refused(api: ControlPlane) -> None:
    body = {"email": "bob@example.com", "password": PASSWORD}
    assert api.call("POST", "/api/auth/signup", json=body).status_code == 201
    assert_error(api.call("POST", "/api/auth/signup", json=body), 409, "conflict")
    wrong = api.call(
        "POST", "/api/auth/login", json={"email": "bob@example.com", "password": "not the password"}
    )
    unknown = api.call("POST", "/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert (
        assert_error(wrong, 401, "invalid_credentials")["message"]
        == assert_error(unknown, 401, "invalid_credentials")["message"]
    )
    assert_error(api.call("POST", "/api/auth/verify", json={"token": "x" * 43}), 400, "invalid_request")
    assert_error(
        api.call("POST", "/api/auth/signup", json={"email": "nope", "password": PASSWORD}),
        400,
        "invalid_request",
    )
    short = assert_error(
        api.call("POST", "/api/auth/signup", json={"email": "c@example.com", "password": "short"}),
        400,
        "invalid_request",
    )
    assert short["param"] == "password"
    assert_error(api.call("GET", "/api/auth/me", "not-a-jwt"), 401, "invalid_api_key")
