"""Seller side over HTTP: pool keys (encrypted, never returned), listings from pending to active through a
real admission probe against a DemoSeller, price review, pause/resume, and pool-key deletion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_plane_support import ControlPlane, assert_error, start_control_plane, wait_until
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller


def _pool_key(
    api: ControlPlane, token: str, seller: DemoSeller, api_key: str | None = None
) -> dict[str, Any]:
    resp = api.call(
        "POST",
        "/v1/pool/keys",
        token,
        json={
            "provider": "custom",
            "base_url": seller.base_url + "/",
            "api_key": api_key or seller.api_key,
            "name": "demo",
        },
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _listing(api: ControlPlane, token: str, pool_key_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "pool_key_id": pool_key_id,
        "model": "demo/echo-1",
        "input_price_per_mtok": "1.00",
        "output_price_per_mtok": "2",
        **extra,
    }
    resp = api.call("POST", "/v1/market/listings", token, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_providers_catalogue(api: ControlPlane) -> None:
    session = api.signup_verified("s@example.com")
    data = api.call("GET", "/v1/pool/providers", session).json()["data"]
    ids = [p["id"] for p in data]
    assert {"openai", "deepseek", "groq", "together", "fireworks", "mistral", "openrouter", "custom"} <= set(
        ids
    )
    openai = next(p for p in data if p["id"] == "openai")
    assert openai["default_base_url"] == "https://api.openai.com/v1" and "chat" in openai["kinds"]
    assert all(p["health"] == "unknown" for p in data)


def test_pool_key_is_encrypted_and_never_returned(api: ControlPlane, demo_seller: DemoSeller) -> None:
    session = api.signup_verified("seller@example.com")
    secret = "sk-provider-" + "Z9" * 20
    created = _pool_key(api, session, demo_seller, api_key=secret)
    assert created["base_url"] == demo_seller.base_url  # normalised, no trailing slash
    assert created["key_hint"] == "..." + secret[-4:] and created["status"] == "active"
    assert "api_key" not in created and secret not in str(created)
    listed = api.call("GET", "/v1/pool/keys", session)
    assert secret not in listed.text and [k["id"] for k in listed.json()["data"]] == [created["id"]]

    row = api.query("SELECT key_ciphertext FROM pool_keys WHERE id = $1", created["id"])[0]
    assert row["key_ciphertext"].startswith("v1:") and secret not in row["key_ciphertext"]
    if api.database_url.startswith("sqlite:"):
        db_path = Path(api.database_url.removeprefix("sqlite:///"))
        files = list(db_path.parent.glob(db_path.name + "*"))  # the database and its WAL
        assert db_path in files
        assert all(secret.encode() not in f.read_bytes() for f in files)

    bad = api.call("POST", "/v1/pool/keys", session, json={"provider": "nope", "api_key": "k"})
    assert assert_error(bad, 400, "invalid_request")["param"] == "provider"
    no_url = api.call("POST", "/v1/pool/keys", session, json={"provider": "custom", "api_key": "k"})
    assert assert_error(no_url, 400, "invalid_request")["param"] == "base_url"
    creds = api.call(
        "POST",
        "/v1/pool/keys",
        session,
        json={"provider": "custom", "api_key": "k", "base_url": "http://u:p@127.0.0.1:1/v1"},
    )
    assert_error(creds, 400, "invalid_request")


def test_private_base_url_is_refused_unless_allowed(
    database_url: str, tmp_path: Path, processes: ProcessGroup
) -> None:
    api = start_control_plane(processes, database_url, tmp_path / "strict", allow_private=False)
    session = api.signup_verified("strict@example.com")
    for url in (
        "http://127.0.0.1:8080/v1",  # plain http
        "https://127.0.0.1/v1",  # loopback
        "https://localhost/v1",
        "https://169.254.169.254/latest",  # metadata
        "https://10.1.2.3/v1",
        "https://[::ffff:127.0.0.1]/v1",  # IPv4-mapped loopback
        "https://[fd00:ec2::254]/",
        "https://0.0.0.0/v1",
    ):
        resp = api.call(
            "POST", "/v1/pool/keys", session, json={"provider": "custom", "base_url": url, "api_key": "k"}
        )
        assert assert_error(resp, 400, "invalid_request")["param"] == "base_url", url
    assert api.call("GET", "/v1/pool/keys", session).json()["data"] == []


def test_listing_goes_active_after_probe_and_price_review(api: ControlPlane, demo_seller: DemoSeller) -> None:
    session = api.signup_verified("seller@example.com")
    pool = _pool_key(api, session, demo_seller)
    listing = _listing(api, session, pool["id"], rpm_cap=60, context_length=8192)
    assert listing["status"] == "pending" and listing["contract_status"] == "pending"
    assert listing["upstream_model"] == "echo-1" and listing["input_price_per_mtok"] == "1"
    assert listing["output_price_per_mtok"] == "2" and listing["provider"] == "custom"

    # The background admission probe runs against the DemoSeller for real.
    def active() -> dict[str, Any] | None:
        current = api.call("GET", f"/v1/market/listings/{listing['id']}", session).json()
        return current if current["status"] == "active" else None

    current = wait_until(active)
    assert current["contract_status"] == "active"
    assert demo_seller.stats.requests >= 2
    runs = api.call("GET", f"/v1/market/listings/{listing['id']}/probe-runs", session).json()["data"]
    assert runs and runs[0]["passed"] is True
    kinds = {c["kind"] for c in runs[0]["checks"]}
    assert {
        "reachability",
        "model_present",
        "chat_completion",
        "chat_schema",
        "usage_honesty",
        "chat_stream",
    } <= kinds
    contracts = api.call("GET", f"/v1/market/listings/{listing['id']}/contracts", session).json()["data"]
    assert len(contracts) == 1 and contracts[0]["status"] == "active"
    assert contracts[0]["terms"]["prices"] == {
        "input_per_mtok": "1",
        "output_per_mtok": "2",
        "cached_input_per_mtok": None,
    }
    checks = api.call("GET", f"/v1/market/contracts/{contracts[0]['id']}/checks", session).json()["data"]
    assert checks and all(c["passed"] for c in checks) and checks[0]["at"].endswith("Z")

    # A move within 50 % is confirmed at once; beyond it the listing waits in price_review.
    small = api.call(
        "PATCH", f"/v1/market/listings/{listing['id']}", session, json={"input_price_per_mtok": "1.4"}
    )
    assert small.json()["status"] == "active" and small.json()["confirmed_input_price_per_mtok"] == "1.4"
    big = api.call(
        "PATCH", f"/v1/market/listings/{listing['id']}", session, json={"output_price_per_mtok": "3.5"}
    )
    assert big.json()["status"] == "price_review" and big.json()["confirmed_output_price_per_mtok"] == "2"
    resume = api.call("PATCH", f"/v1/market/listings/{listing['id']}", session, json={"status": "active"})
    assert_error(resume, 409, "conflict")
    confirmed = api.call("POST", f"/v1/market/listings/{listing['id']}/confirm-price", session)
    assert (
        confirmed.json()["status"] == "active"
        and confirmed.json()["confirmed_output_price_per_mtok"] == "3.5"
    )
    assert_error(
        api.call("POST", f"/v1/market/listings/{listing['id']}/confirm-price", session), 409, "conflict"
    )
    cut = api.call(
        "PATCH", f"/v1/market/listings/{listing['id']}", session, json={"output_price_per_mtok": "1.7"}
    )
    assert cut.json()["status"] == "price_review"  # a cut of more than 50 % is reviewed too

    bad_price = api.call(
        "PATCH", f"/v1/market/listings/{listing['id']}", session, json={"input_price_per_mtok": "-1"}
    )
    assert assert_error(bad_price, 400, "invalid_request")["param"] == "input_price_per_mtok"

    other = api.signup_verified("other@example.com")
    assert_error(api.call("GET", f"/v1/market/listings/{listing['id']}", other), 404, "not_found")
    assert_error(api.call("POST", f"/v1/market/listings/{listing['id']}/probe", other), 404, "not_found")
    assert_error(
        api.call("GET", f"/v1/market/contracts/{contracts[0]['id']}/checks", other), 404, "not_found"
    )

    assert api.call("DELETE", f"/v1/market/listings/{listing['id']}", session).status_code == 204
    assert_error(api.call("GET", f"/v1/market/listings/{listing['id']}", session), 404, "not_found")


def test_failed_probe_keeps_listing_pending_with_reasons(
    api: ControlPlane, demo_seller_factory: Callable[..., DemoSeller]
) -> None:
    seller = demo_seller_factory()
    session = api.signup_verified("seller@example.com")
    pool = _pool_key(api, session, seller, api_key="the-wrong-provider-key")
    listing = _listing(api, session, pool["id"])
    run = api.call("POST", f"/v1/market/listings/{listing['id']}/probe", session)
    assert run.status_code == 200, run.text
    assert run.json()["passed"] is False
    assert [c["kind"] for c in run.json()["checks"] if not c["passed"]] == ["auth"]
    current = api.call("GET", f"/v1/market/listings/{listing['id']}", session).json()
    assert current["status"] == "pending" and current["contract_status"] == "pending"
    contract = api.call("GET", f"/v1/market/listings/{listing['id']}/contracts", session).json()["data"][0]
    assert contract["reason"].startswith("auth:")

    # Same seller without usage reporting: the schema check names the problem.
    no_usage = demo_seller_factory(omit_usage=True)
    pool2 = _pool_key(api, session, no_usage)
    listing2 = _listing(api, session, pool2["id"])
    run2 = api.call("POST", f"/v1/market/listings/{listing2['id']}/probe", session).json()
    assert run2["passed"] is False and [c["kind"] for c in run2["checks"] if not c["passed"]] == [
        "chat_schema"
    ]


def test_pause_resume_and_pool_key_deletion_pauses_listings(
    api: ControlPlane, demo_seller: DemoSeller
) -> None:
    session = api.signup_verified("seller@example.com")
    pool = _pool_key(api, session, demo_seller)
    listing = _listing(api, session, pool["id"])
    run = api.call("POST", f"/v1/market/listings/{listing['id']}/probe", session).json()
    assert run["passed"] is True
    assert api.call("GET", f"/v1/market/listings/{listing['id']}", session).json()["status"] == "active"

    paused = api.call("PATCH", f"/v1/market/listings/{listing['id']}", session, json={"status": "paused"})
    assert paused.json()["status"] == "paused"
    resumed = api.call("PATCH", f"/v1/market/listings/{listing['id']}", session, json={"status": "active"})
    assert resumed.json()["status"] == "active"
    assert [x["id"] for x in api.call("GET", "/v1/market/listings", session).json()["data"]] == [
        listing["id"]
    ]

    assert api.call("DELETE", f"/v1/pool/keys/{pool['id']}", session).status_code == 204
    assert api.call("GET", f"/v1/market/listings/{listing['id']}", session).json()["status"] == "paused"
    assert api.call("GET", "/v1/pool/keys", session).json()["data"] == []
    gone = api.call(
        "POST",
        "/v1/market/listings",
        session,
        json={
            "pool_key_id": pool["id"],
            "model": "m",
            "input_price_per_mtok": "1",
            "output_price_per_mtok": "1",
        },
    )
    assert_error(gone, 404, "not_found")
