"""Speech listings over HTTP: the billing unit (`price_unit`) is accepted for speech only, shown on the
listing, passes the real admission probe against a DemoSeller, and a change of unit waits for
confirmation like a large price move."""

from __future__ import annotations

from typing import Any

from control_plane_support import ControlPlane, assert_error, wait_until

from dragonfly.demo.seller import DemoSeller


def _pool_key(api: ControlPlane, token: str, seller: DemoSeller) -> str:
    resp = api.call(
        "POST",
        "/v1/pool/keys",
        token,
        json={"provider": "custom", "base_url": seller.base_url, "api_key": seller.api_key},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _create(api: ControlPlane, token: str, pool_key_id: str, **extra: Any) -> Any:
    body = {
        "pool_key_id": pool_key_id,
        "model": "demo/tts-1",
        "upstream_model": "echo-1",
        "input_price_per_mtok": "15",
        "output_price_per_mtok": "0",
        **extra,
    }
    return api.call("POST", "/v1/market/listings", token, json=body)


def test_price_unit_is_for_speech_listings(api: ControlPlane, demo_seller: DemoSeller) -> None:
    session = api.signup_verified("voice@example.com")
    pool = _pool_key(api, session, demo_seller)

    created = _create(api, session, pool, kind="speech", price_unit="character")
    assert created.status_code == 201, created.text
    listing = created.json()
    assert (listing["kind"], listing["price_unit"]) == ("speech", "character")

    def active() -> dict[str, Any] | None:
        current = api.call("GET", f"/v1/market/listings/{listing['id']}", session).json()
        return current if current["status"] == "active" else None

    assert wait_until(active)["price_unit"] == "character"
    runs = api.call("GET", f"/v1/market/listings/{listing['id']}/probe-runs", session).json()["data"]
    assert runs[0]["passed"] and "speech" in {c["kind"] for c in runs[0]["checks"]}

    # Unstated, a speech listing is priced per token, like every other kind.
    per_token = _create(api, session, pool, kind="speech", model="demo/tts-2")
    assert per_token.status_code == 201 and per_token.json()["price_unit"] == "token"

    # Any other kind is priced per token and may not state a unit.
    for kind in ("chat", "embeddings"):
        refused = _create(api, session, pool, kind=kind, price_unit="token")
        assert assert_error(refused, 400, "invalid_request")["param"] == "price_unit"
    bad = _create(api, session, pool, kind="speech", price_unit="second")
    assert assert_error(bad, 400, "invalid_request")["param"] == "price_unit"
    chat = _create(api, session, pool, model="demo/echo-1")
    assert chat.status_code == 201 and chat.json()["price_unit"] == "token"
    patched = api.call(
        "PATCH", f"/v1/market/listings/{chat.json()['id']}", session, json={"price_unit": "character"}
    )
    assert assert_error(patched, 400, "invalid_request")["param"] == "price_unit"

    # The same number per another unit is another price: it waits for confirmation.
    path = f"/v1/market/listings/{listing['id']}"
    same = api.call("PATCH", path, session, json={"price_unit": "character"})
    assert same.json()["status"] == "active"
    null = api.call("PATCH", path, session, json={"price_unit": None})
    assert assert_error(null, 400, "invalid_request")["param"] == "price_unit"
    moved = api.call("PATCH", path, session, json={"price_unit": "token"})
    assert (moved.json()["status"], moved.json()["price_unit"]) == ("price_review", "token")
    confirmed = api.call("POST", f"{path}/confirm-price", session)
    assert (confirmed.json()["status"], confirmed.json()["price_unit"]) == ("active", "token")
