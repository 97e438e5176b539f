"""Buyer keys and routing profiles: CRUD, validation errors, default profile, rebinding on delete."""

from __future__ import annotations

import time

from control_plane_support import ControlPlane, assert_error


def test_buyer_key_crud(api: ControlPlane) -> None:
    session = api.signup_verified("buyer@example.com")
    created = api.call(
        "POST",
        "/api/keys",
        session,
        json={
            "name": "prod",
            "key_group": "team-a_1",
            "monthly_budget_cents": 500,
            "ip_whitelist": ["10.0.0.0/8", "2001:db8::1"],
            "ip_blacklist": ["10.1.2.3"],
        },
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("sk-df-") and len(key["key"]) >= 38
    assert key["key_hint"].startswith("sk-df-") and key["key"] not in key["key_hint"]
    assert key["ip_whitelist"] == ["10.0.0.0/8", "2001:db8::1/128"] and key["ip_blacklist"] == ["10.1.2.3/32"]
    profiles = api.call("GET", "/api/routing/profiles", session).json()["data"]
    assert [(p["name"], p["is_default"]) for p in profiles] == [("balanced", True)]
    assert key["routing_profile_id"] == profiles[0]["id"]
    # Stored as a hash: the raw key appears nowhere in the table.
    rows = api.query("SELECT key_hash FROM api_keys WHERE id = $1", key["id"])
    assert rows and rows[0]["key_hash"] != key["key"] and key["key"][6:] not in rows[0]["key_hash"]

    listed = api.call("GET", "/api/keys", session).json()["data"]
    assert len(listed) == 1 and "key" not in listed[0]
    assert listed[0]["spent_this_month_cents"] == 0 and listed[0]["revoked"] is False
    assert listed[0]["monthly_budget_cents"] == 500

    patched = api.call(
        "PATCH", f"/api/keys/{key['id']}", session, json={"monthly_budget_cents": None, "name": "p2"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["monthly_budget_cents"] is None and patched.json()["name"] == "p2"
    assert patched.json()["ip_whitelist"] == ["10.0.0.0/8", "2001:db8::1/128"]  # untouched

    assert api.call("DELETE", f"/api/keys/{key['id']}", session).status_code == 204
    assert api.call("GET", "/api/keys", session).json()["data"][0]["revoked"] is True
    assert_error(api.call("PATCH", f"/api/keys/{key['id']}", session, json={"name": "x"}), 409, "conflict")
    assert_error(
        api.call("DELETE", "/api/keys/00000000-0000-4000-8000-000000000000", session), 404, "not_found"
    )


def test_key_validation_errors_are_openai_shaped(api: ControlPlane) -> None:
    session = api.signup_verified("v@example.com")
    cases = [
        ({"key_group": "Upper Case"}, "key_group"),
        ({"monthly_budget_cents": -1}, "monthly_budget_cents"),
        ({"ip_whitelist": ["10.0.0.0/33"]}, "ip_whitelist.0"),
        ({"ip_blacklist": ["not-an-ip"]}, "ip_blacklist.0"),
        ({"routing_profile_id": "nope"}, "routing_profile_id"),
        ({"unknown_field": 1}, "unknown_field"),
    ]
    for body, param in cases:
        err = assert_error(api.call("POST", "/api/keys", session, json=body), 400, "invalid_request")
        assert err["param"] == param, (body, err)
        assert err["type"] == "invalid_request_error"
    bad_json = api.call(
        "POST", "/api/keys", session, data=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(bad_json, 400, "invalid_request")
    assert_error(api.call("POST", "/api/keys", session, json=[1, 2]), 400, "invalid_request")
    assert api.call("GET", "/api/keys", session).json()["data"] == []


def test_a_profile_field_that_could_not_act_is_refused(api: ControlPlane) -> None:
    """A misspelt provider, an allow-list of nothing, a seller that is not an id, a null name or strategy,
    a hedge that fallback would never let start: 400 naming the field, nothing stored."""
    session = api.signup_verified("strict@example.com")
    base = {"name": "strict", "strategy": "balanced"}
    cases = [
        ({"providers_allow": ["opneai"]}, "providers_allow", "unknown provider 'opneai'"),
        ({"providers_deny": ["groq", "grok"]}, "providers_deny", "unknown provider 'grok'"),
        ({"providers_allow": []}, "providers_allow", "would allow no provider"),
        ({"sellers_deny": ["acme"]}, "sellers_deny", "not a seller id"),
        (
            {"fallback": {"enabled": False}, "hedge": {"enabled": True, "after_ms": 200}},
            "hedge",
            "needs fallback enabled",
        ),
        (
            {"fallback": {"max_attempts": 1}, "hedge": {"enabled": True, "after_ms": 200}},
            "hedge",
            "max_attempts of 2",
        ),
    ]
    for extra, param, words in cases:
        resp = api.call("POST", "/api/routing/profiles", session, json={**base, **extra})
        err = assert_error(resp, 400, "invalid_request")
        assert err["param"] == param and words in err["message"], (extra, err)
    names = [p["name"] for p in api.call("GET", "/api/routing/profiles", session).json()["data"]]
    assert names == ["balanced"]

    made = api.call(
        "POST",
        "/api/routing/profiles",
        session,
        json={**base, "providers_allow": ["openai", "custom"], "hedge": {"enabled": True, "after_ms": 200}},
    )
    assert made.status_code == 201, made.text
    one = f"/api/routing/profiles/{made.json()['id']}"
    for patch, param in (
        ({"name": None}, "name"),
        ({"strategy": None}, "strategy"),
        ({"fallback": {"enabled": False}}, "hedge"),
        ({"providers_deny": ["nobody"]}, "providers_deny"),
    ):
        err = assert_error(api.call("PATCH", one, session, json=patch), 400, "invalid_request")
        assert err["param"] == param, (patch, err)
    kept = api.call("GET", one, session).json()
    assert kept["name"] == "strict" and kept["fallback"]["enabled"] is True
    assert kept["providers_deny"] == []
    # Hedging off, fallback off: fine.
    off = api.call("PATCH", one, session, json={"hedge": None, "fallback": {"enabled": False}})
    assert off.status_code == 200, off.text


def test_routing_profiles_crud_and_delete_rebinds_keys(api: ControlPlane) -> None:
    session = api.signup_verified("p@example.com")
    body = {
        "name": "cheap",
        "strategy": "custom",
        "weights": {"price": 3, "latency": 1},
        "providers_deny": ["groq"],
        "max_input_price_per_mtok": "0.5",
        "max_output_price_per_mtok": "1.25",
        "max_ttft_ms": 800,
        "fallback": {"enabled": True, "max_attempts": 2, "retry_on": [429, "timeout"]},
        "hedge": {"enabled": False, "after_ms": 300},
    }
    created = api.call("POST", "/api/routing/profiles", session, json=body)
    assert created.status_code == 201, created.text
    profile = created.json()
    assert profile["max_input_price_per_mtok"] == "0.5" and profile["max_output_price_per_mtok"] == "1.25"
    assert profile["fallback"] == {"enabled": True, "max_attempts": 2, "retry_on": [429, "timeout"]}
    assert profile["weights"]["price"] == 3 and profile["is_default"] is False
    stored = api.query("SELECT config FROM routing_profiles WHERE id = $1", profile["id"])[0]["config"]
    assert '"max_input_price":500000' in stored.replace(" ", "")

    assert_error(
        api.call("POST", "/api/routing/profiles", session, json={"name": "c", "strategy": "custom"}),
        400,
        "invalid_request",
    )
    bad_fallback = {"name": "x", "strategy": "balanced", "fallback": {"max_attempts": 9}}
    assert (
        assert_error(
            api.call("POST", "/api/routing/profiles", session, json=bad_fallback), 400, "invalid_request"
        )["param"]
        == "fallback.max_attempts"
    )
    assert_error(
        api.call("POST", "/api/routing/profiles", session, json={"name": "x", "strategy": "fastest"}),
        400,
        "invalid_request",
    )

    patched = api.call(
        "PATCH",
        f"/api/routing/profiles/{profile['id']}",
        session,
        json={"max_ttft_ms": None, "name": "cheaper"},
    )
    assert (
        patched.status_code == 200
        and patched.json()["max_ttft_ms"] is None
        and patched.json()["name"] == "cheaper"
    )
    assert patched.json()["max_input_price_per_mtok"] == "0.5"

    key = api.call("POST", "/api/keys", session, json={"routing_profile_id": profile["id"]}).json()
    assert key["routing_profile_id"] == profile["id"]
    default_id = next(
        p["id"] for p in api.call("GET", "/api/routing/profiles", session).json()["data"] if p["is_default"]
    )
    assert_error(api.call("DELETE", f"/api/routing/profiles/{default_id}", session), 400, "invalid_request")
    assert api.call("DELETE", f"/api/routing/profiles/{profile['id']}", session).status_code == 204
    assert api.call("GET", "/api/keys", session).json()["data"][0]["routing_profile_id"] == default_id
    assert_error(api.call("GET", f"/api/routing/profiles/{profile['id']}", session), 404, "not_found")


def test_usage_reports_read_the_buyers_trades(api: ControlPlane) -> None:
    session = api.signup_verified("u@example.com")
    me = api.call("GET", "/api/auth/me", session).json()
    key = api.call("POST", "/api/keys", session, json={"name": "k"}).json()
    other = api.signup_verified("other@example.com")
    other_id = api.call("GET", "/api/auth/me", other).json()["id"]
    # Trades are written by the data plane; insert two of ours and one of another buyer directly.
    now = int(time.time() * 1000)
    for trade_id, buyer, cost in (
        ("t1", me["id"], 12_345),
        ("t2", me["id"], 20_000),
        ("t3", other_id, 99_999),
    ):
        api.query(
            "INSERT INTO trades (id, buyer_account_id, key_id, model, streamed, status, tokens_prompt,"
            " tokens_completion, hold_micros, cost_micros, created_at)"
            " VALUES ($1, $2, $3, 'demo/echo-1', 0, 'settled', 10, 5, 0, $4, $5) RETURNING id",
            trade_id,
            buyer,
            key["id"],
            cost,
            now,
        )
    totals = api.call("GET", "/api/usage", session).json()
    assert totals == {"requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "cost_usd": "0.032345"}
    by_key = api.call("GET", "/api/usage/by-key", session).json()["data"]
    assert [(r["key_id"], r["requests"]) for r in by_key] == [(key["id"], 2)]
    daily = api.call("GET", "/api/usage/daily?days=7", session).json()["data"]
    assert len(daily) == 1 and daily[0]["requests"] == 2 and daily[0]["models"][0]["model"] == "demo/echo-1"
    assert api.call("GET", "/api/keys", session).json()["data"][0]["spent_this_month_cents"] == 3
    assert_error(api.call("GET", "/api/usage?from=yesterday", session), 400, "invalid_request")
