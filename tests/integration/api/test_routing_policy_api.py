"""Routing policy on the control plane: a profile the market cannot rank with is refused up front (400,
OpenAI-shaped), the operator's strategy weights and listing quality overrides are stored, validated and
operator-only. Runs `python -m dragonfly.api` against SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from control_plane_support import ControlPlane, assert_error, wait_until

from dragonfly.demo.seller import DemoSeller
from dragonfly.native.market import FEATURES, OPERATOR_STRATEGIES, default_strategy_weights

PROFILES = "/api/routing/profiles"
WEIGHTS = "/api/admin/routing/weights"


def _profile(api: ControlPlane, session: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = api.call("POST", PROFILES, session, json={"name": "p", **body})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _refused(
    api: ControlPlane, session: str, body: dict[str, Any], method: str = "POST", path: str = PROFILES
) -> dict[str, Any]:
    return assert_error(api.call(method, path, session, json=body), 400, "invalid_request")


def test_profiles_the_market_cannot_rank_with_are_refused(api: ControlPlane) -> None:
    session = api.signup_verified("buyer@example.com")
    # The API's weight vocabulary is the native core's: `latency`, never `ttft`.
    err = _refused(api, session, {"name": "x", "strategy": "custom", "weights": {"ttft": 1}})
    assert err["param"] == "weights" and "unknown weight 'ttft'" in err["message"]
    assert "latency" in err["message"]
    _refused(api, session, {"name": "x", "strategy": "fastest"})
    assert _refused(api, session, {"name": "x", "strategy": "balanced", "max_latency_ms": 5})["param"] == (
        "max_latency_ms"
    )
    _refused(api, session, {"name": "x", "strategy": "custom"})
    _refused(api, session, {"name": "x", "strategy": "custom", "weights": {"price": 0, "latency": 0}})
    _refused(api, session, {"name": "x", "strategy": "custom", "weights": {"price": -1, "latency": 2}})
    _refused(api, session, {"name": "x", "strategy": "custom", "weights": {"price": "1"}})
    # Weights act only with `custom`; with another strategy they are refused, not silently ignored.
    assert (
        _refused(api, session, {"name": "x", "strategy": "cost_first", "weights": {"price": 1}})["param"]
        == "weights"
    )
    # Hedging needs its delay; a delay too short to be a hedge (every request sent twice) is refused.
    err = _refused(api, session, {"name": "x", "strategy": "balanced", "hedge": {"enabled": True}})
    assert err["param"] == "hedge" and "after_ms is required" in err["message"]
    _refused(api, session, {"name": "x", "strategy": "balanced", "hedge": {"enabled": True, "after_ms": 5}})
    hedged = _profile(api, session, {"strategy": "balanced", "hedge": {"enabled": True, "after_ms": 300}})
    assert hedged["hedge"] == {"enabled": True, "after_ms": 300}
    assert (
        _profile(api, session, {"strategy": "balanced", "hedge": {"enabled": False}})["hedge"]["enabled"]
        is False
    )

    custom = _profile(api, session, {"strategy": "custom", "weights": {"latency": 2}})
    assert custom["weights"] == {"price": 0, "latency": 2, "throughput": 0, "reliability": 0, "quality": 0}
    path = f"{PROFILES}/{custom['id']}"
    _refused(api, session, {"weights": None}, "PATCH", path)  # custom still needs weights
    _refused(api, session, {"strategy": "balanced", "weights": {"price": 1}}, "PATCH", path)
    _refused(api, session, {"hedge": {"enabled": True, "after_ms": None}}, "PATCH", path)
    moved = api.call("PATCH", path, session, json={"strategy": "quality_first"})
    assert moved.status_code == 200, moved.text
    # Off `custom`, the stored weights are dropped: they would not act.
    assert moved.json()["weights"] is None
    assert '"weights":null' in api.query("SELECT config FROM routing_profiles WHERE id = $1", custom["id"])[
        0
    ]["config"].replace(" ", "")
    back = api.call("PATCH", path, session, json={"strategy": "custom", "weights": {"price": 1}})
    assert back.status_code == 200 and back.json()["weights"]["price"] == 1


def test_operator_strategy_weights(api: ControlPlane) -> None:
    operator = api.make_operator("ops@example.com")
    defaults = default_strategy_weights()
    got = api.call("GET", WEIGHTS, operator)
    assert got.status_code == 200, got.text
    assert got.json() == defaults
    assert set(got.json()) == set(OPERATOR_STRATEGIES) and "custom" not in got.json()
    assert all(set(w) == set(FEATURES) for w in got.json().values())

    # Each named strategy is replaced whole (a weight left out is 0); the others keep their values.
    put = api.call("PUT", WEIGHTS, operator, json={"balanced": {"price": 1}})
    assert put.status_code == 200, put.text
    assert put.json()["balanced"] == {
        "price": 1,
        "latency": 0,
        "throughput": 0,
        "reliability": 0,
        "quality": 0,
    }
    assert put.json()["cost_first"] == defaults["cost_first"]
    assert api.call("GET", WEIGHTS, operator).json() == put.json()
    stored = api.query("SELECT strategy, price, latency, updated_by FROM strategy_weights")
    assert [(r["strategy"], r["price"], r["latency"]) for r in stored] == [("balanced", 1, 0)]
    assert stored[0]["updated_by"]

    everything = {s: {**w, "quality": 2.5} for s, w in defaults.items()}
    assert api.call("PUT", WEIGHTS, operator, json=everything).json() == everything
    # null returns a strategy to the native default.
    reset = api.call("PUT", WEIGHTS, operator, json={"balanced": None}).json()
    assert reset["balanced"] == defaults["balanced"] and reset["quality_first"]["quality"] == 2.5

    err = _refused(api, operator, {"custom": {"price": 1}}, "PUT", WEIGHTS)
    assert "unknown strategy 'custom'" in err["message"]
    for bad in (
        {"custom": {"price": 1}},
        {"fastest": {"price": 1}},
        {"balanced": {"ttft": 1}},
        {"balanced": {"price": -0.5, "latency": 1}},
        {"balanced": {"price": 0, "latency": 0}},
        {"balanced": {}},
        {},
        {"balanced": {"price": True}},
    ):
        _refused(api, operator, bad, "PUT", WEIGHTS)
    assert api.call("GET", WEIGHTS, operator).json() == reset


def test_routing_admin_is_operator_only(api: ControlPlane) -> None:
    buyer = api.signup_verified("buyer@example.com")
    full_key = api.call(
        "POST", "/api/management-keys", buyer, json={"name": "k", "mgmt_scope": "full"}
    ).json()["key"]
    seller_key = api.call(
        "POST", "/api/management-keys", buyer, json={"name": "s", "mgmt_scope": "seller"}
    ).json()["key"]
    listing = "01900000-0000-7000-8000-000000000000"
    for token in (buyer, full_key, seller_key):
        assert_error(api.call("GET", WEIGHTS, token), 403, "permission_denied")
        assert_error(
            api.call("PUT", WEIGHTS, token, json={"balanced": {"price": 1}}), 403, "permission_denied"
        )
        assert_error(
            api.call("GET", f"/api/admin/listings/{listing}/quality", token), 403, "permission_denied"
        )
        assert_error(
            api.call("PUT", f"/api/admin/listings/{listing}/quality", token, json={"quality": 1}),
            403,
            "permission_denied",
        )
    assert_error(api.call("GET", WEIGHTS), 401, "invalid_api_key")
    assert not api.query("SELECT strategy FROM strategy_weights")
    operator = api.make_operator("ops@example.com")
    assert_error(api.call("GET", f"/api/admin/listings/{listing}/quality", operator), 404, "not_found")
    assert_error(
        api.call("PUT", f"/api/admin/listings/{listing}/quality", operator, json={"quality": 0.5}),
        404,
        "not_found",
    )


def test_listing_quality_comes_from_probes_unless_the_operator_overrides(
    api: ControlPlane, demo_seller: DemoSeller
) -> None:
    seller = api.signup_verified("seller@example.com")
    pool = api.call(
        "POST",
        "/v1/pool/keys",
        seller,
        json={"provider": "custom", "base_url": demo_seller.base_url, "api_key": demo_seller.api_key},
    ).json()
    listing = api.call(
        "POST",
        "/v1/market/listings",
        seller,
        json={
            "pool_key_id": pool["id"],
            "model": "demo/echo-1",
            "input_price_per_mtok": "1",
            "output_price_per_mtok": "2",
        },
    ).json()
    operator = api.make_operator("ops@example.com")
    path = f"/api/admin/listings/{listing['id']}/quality"

    def probed() -> dict[str, Any] | None:
        got = api.call("GET", path, operator).json()
        return got if got["probe_runs"] == 1 else None

    # The admission probe passed every check: probe quality 1, blended with live success by the gateway.
    first = wait_until(probed)
    assert first["probe_quality"] == 1.0 and first["quality"] == 1.0
    assert first["source"] == "probes" and first["blends_live_success"] is True
    assert first["quality_override"] is None

    # A run that fails its 4th check (reachability, auth, model_present pass; chat_completion fails)
    # scores 3/4; the probe quality is the mean over the recent runs.
    demo_seller.config.fail_status = 500
    run = api.call("POST", f"/v1/market/listings/{listing['id']}/probe", seller).json()
    assert run["passed"] is False and [c["passed"] for c in run["checks"]] == [True, True, True, False]
    computed = api.call("GET", path, operator).json()
    assert computed["probe_runs"] == 2 and computed["probe_quality"] == (1.0 + 0.75) / 2

    seq = api.query("SELECT seq FROM change_seq")[0]["seq"]
    pinned = api.call("PUT", path, operator, json={"quality": 0.2})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["quality"] == 0.2 and pinned.json()["source"] == "override"
    assert pinned.json()["blends_live_success"] is False and pinned.json()["probe_quality"] == 0.875
    assert api.query("SELECT seq FROM change_seq")[0]["seq"] > seq  # the data plane reloads
    for bad in ({"quality": 1.5}, {"quality": -0.1}, {"quality": "0.5"}, {"quality": True}, {}, {"q": 1}):
        _refused(api, operator, bad, "PUT", path)
    back = api.call("PUT", path, operator, json={"quality": None}).json()
    assert back["quality"] == 0.875 and back["source"] == "probes" and back["quality_override"] is None
