"""Market pricing over HTTP against a real control plane (both storage backends) with its pricing worker
running every 0.2 s, and a real DemoSeller for the admission probes: a multiplier listing follows a
moving reference, the operator's reference overrides the market and DELETE returns to it, an auto-follow
listing tracks the market and stops at its floor with every move in its price history, the listing view
says when a price keeps a listing from being routed, and bad pricing settings are 400s."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from control_plane_support import ControlPlane, assert_error, start_control_plane, wait_until
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

MODEL = "acme/priced-1"


@pytest.fixture
def api(database_url: str, tmp_path: Path, processes: ProcessGroup) -> Iterator[ControlPlane]:
    yield start_control_plane(
        processes, database_url, tmp_path / "data", extra_env={"DRAGONFLY_PRICING_PERIOD_S": "0.2"}
    )


class Seller:
    def __init__(self, api: ControlPlane, token: str, demo: DemoSeller) -> None:
        self.api, self.token = api, token
        pool = api.call(
            "POST",
            "/v1/pool/keys",
            token,
            json={"provider": "custom", "base_url": demo.base_url, "api_key": demo.api_key},
        )
        assert pool.status_code == 201, pool.text
        self.pool_key_id = pool.json()["id"]

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {"pool_key_id": self.pool_key_id, "model": MODEL, "upstream_model": "echo-1", **fields}
        resp = self.api.call("POST", "/v1/market/listings", self.token, json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def get(self, listing_id: str) -> dict[str, Any]:
        resp = self.api.call("GET", f"/v1/market/listings/{listing_id}", self.token)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def active(self, **fields: Any) -> dict[str, Any]:
        """A listing, once its admission probe has made it active."""
        lid = self.create(**fields)["id"]
        return dict(wait_until(lambda: x if (x := self.get(lid))["status"] == "active" else None))

    def patch(self, listing_id: str, **fields: Any) -> dict[str, Any]:
        resp = self.api.call("PATCH", f"/v1/market/listings/{listing_id}", self.token, json=fields)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def history(self, listing_id: str) -> list[dict[str, Any]]:
        resp = self.api.call("GET", f"/v1/market/listings/{listing_id}/price-history", self.token)
        assert resp.status_code == 200, resp.text
        return list(resp.json()["data"])


def _prices(listing: dict[str, Any]) -> tuple[Decimal, Decimal]:
    return Decimal(listing["input_price_per_mtok"]), Decimal(listing["output_price_per_mtok"])


def _priced(seller: Seller, listing_id: str, expected: tuple[str, str]) -> dict[str, Any]:
    want = (Decimal(expected[0]), Decimal(expected[1]))
    return dict(wait_until(lambda: x if _prices(x := seller.get(listing_id)) == want else None))


@pytest.fixture
def seller(api: ControlPlane, demo_seller: DemoSeller) -> Seller:
    return Seller(api, api.signup_verified("seller@example.com"), demo_seller)


def test_a_multiplier_listing_follows_a_moving_reference(api: ControlPlane, seller: Seller) -> None:
    low = seller.active(input_price_per_mtok="1", output_price_per_mtok="2")
    # Priced from the market median at once: the only active fixed-price listing.
    created = seller.create(price_multiplier="1.5")
    mid = created["id"]
    assert _prices(created) == (Decimal("1.5"), Decimal("3"))
    assert created["pricing"] == {
        "mode": "multiplier",
        "reference_missing": False,
        "lowest_payout_per_mtok": "1.35",  # 1.5 less the default 10 % fee
        "payout_floor_met": True,
        "excluded": None,
    }
    # A second fixed listing becomes active through its probe, not through an API write: the worker
    # moves the median to (2, 3) and re-prices the multiplier listing.
    seller.active(input_price_per_mtok="3", output_price_per_mtok="4")
    moved = _priced(seller, mid, ("3", "4.5"))
    assert moved["status"] in ("pending", "active")  # never price_review: the market moved, not the seller
    assert moved["confirmed_input_price_per_mtok"] == "3"
    # A seller's PATCH moves the median within the same request.
    seller.patch(low["id"], input_price_per_mtok="1.4")
    assert _prices(seller.get(mid)) == (Decimal("3.3"), Decimal("4.5"))
    entries = seller.history(mid)
    assert [e["source"] for e in entries][:3] == ["multiplier"] * 3
    assert entries[0]["input_price_per_mtok"] == "3.3" and entries[0]["previous_input_price_per_mtok"] == "3"
    assert "1.5 × the market reference (median of 2 listing(s))" in entries[0]["detail"]
    contract = api.call("GET", f"/v1/market/listings/{mid}/contracts", seller.token).json()["data"][0]
    assert contract["terms"]["prices"]["input_per_mtok"] == "3.3"

    operator = api.make_operator("ops@example.com")
    refs = api.call("GET", "/api/admin/reference-prices", operator).json()["data"]
    assert [(r["model"], r["source"], r["input_price_per_mtok"]) for r in refs] == [(MODEL, "market", "2.2")]
    assert refs[0]["market"]["listings"] == 2 and refs[0]["multiplier_listings"] == 1


def test_operator_reference_overrides_the_market_and_delete_returns_to_it(
    api: ControlPlane, seller: Seller
) -> None:
    operator = api.make_operator("ops@example.com")
    path = f"/api/admin/reference-prices/{MODEL}"
    # No fixed-price listing, no reference: the multiplier listing is not routable and says so.
    lone = seller.active(price_multiplier="2")
    assert lone["pricing"]["reference_missing"] is True
    assert lone["pricing"]["excluded"] == "reference_price_missing"
    listed = api.call("GET", "/api/admin/reference-prices", operator).json()["data"]
    assert listed == [
        {
            "model": MODEL,
            "kind": "chat",
            "source": None,
            "input_price_per_mtok": None,
            "output_price_per_mtok": None,
            "cached_input_price_per_mtok": None,
            "market": None,
            "override": None,
            "multiplier_listings": 1,
            "reference_missing_listings": 1,
        }
    ]
    # The operator's reference prices it at once (the model name's slash is part of the path).
    put = api.call(
        "PUT",
        path,
        operator,
        json={
            "input_price_per_mtok": "0.5",
            "output_price_per_mtok": "1.5",
            "cached_input_price_per_mtok": "0.1",
        },
    )
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "operator" and put.json()["override"]["input_price_per_mtok"] == "0.5"
    priced = seller.get(lone["id"])
    assert _prices(priced) == (Decimal("1"), Decimal("3"))
    assert priced["cached_input_price_per_mtok"] == "0.2"
    assert priced["pricing"]["reference_missing"] is False and priced["pricing"]["excluded"] is None
    # A fixed-price listing makes a market price; the operator's still wins while it is set.
    seller.active(input_price_per_mtok="4", output_price_per_mtok="4")
    wait_until(lambda: api.call("GET", path, operator).json()["market"] is not None)
    assert _prices(seller.get(lone["id"])) == (Decimal("1"), Decimal("3"))
    # DELETE: back to the market (median of the one fixed listing: 4, 4), re-priced in the same request.
    cleared = api.call("DELETE", f"/api/admin/reference-prices/{MODEL.replace('/', '%2F')}", operator)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["source"] == "market" and cleared.json()["override"] is None
    back = seller.get(lone["id"])
    assert _prices(back) == (Decimal("8"), Decimal("8")) and back["cached_input_price_per_mtok"] is None
    assert back["status"] == "active"
    assert_error(api.call("DELETE", path, operator), 404, "not_found")
    # Operator routes only.
    assert_error(api.call("GET", "/api/admin/reference-prices", seller.token), 403, "permission_denied")
    assert_error(
        api.call("PUT", path, seller.token, json={"input_price_per_mtok": "1", "output_price_per_mtok": "1"}),
        403,
        "permission_denied",
    )


def test_an_auto_follow_listing_tracks_the_market_and_stops_at_its_floor(
    api: ControlPlane, seller: Seller
) -> None:
    leader = seller.active(input_price_per_mtok="2", output_price_per_mtok="4")
    follow = {"mode": "lowest", "offset_pct": "-10", "floor_per_mtok": "1.5"}
    created = seller.create(input_price_per_mtok="3", output_price_per_mtok="5", auto_follow=follow)
    fid = created["id"]
    # Moved to 10 % under the lowest other listing at once, without a price review.
    assert _prices(created) == (Decimal("1.8"), Decimal("3.6"))
    assert created["pricing"]["mode"] == "auto_follow"
    wait_until(lambda: seller.get(fid)["status"] == "active")
    # The market moves down: the follower's input stops at its floor, its output keeps following.
    seller.patch(leader["id"], input_price_per_mtok="1.6", output_price_per_mtok="3.2")
    assert _prices(seller.get(fid)) == (Decimal("1.5"), Decimal("2.88"))
    seller.patch(leader["id"], input_price_per_mtok="1.2", output_price_per_mtok="2.4")
    at_floor = seller.get(fid)
    assert _prices(at_floor) == (Decimal("1.5"), Decimal("2.16"))
    assert at_floor["status"] == "active"
    # A cheaper listing that enters through its probe is followed by the worker, down to the floor.
    seller.active(input_price_per_mtok="1", output_price_per_mtok="1")
    settled = _priced(seller, fid, ("1.5", "1.5"))
    assert settled["status"] == "active" and settled["confirmed_output_price_per_mtok"] == "1.5"
    entries = seller.history(fid)
    assert [e["source"] for e in entries] == ["auto_follow"] * 4 + ["seller"]
    assert entries[-1]["detail"] == "created" and entries[-1]["input_price_per_mtok"] == "3"
    assert [e["output_price_per_mtok"] for e in entries] == ["1.5", "2.16", "2.88", "3.6", "5"]
    assert entries[0]["detail"] == "lowest of 2 other listing(s) -10 %; held at the floor 1.5"
    assert entries[2]["detail"].endswith("held at the floor 1.5")
    assert entries[3]["detail"] == "lowest of 1 other listing(s) -10 %"
    # Another seller cannot read it.
    other = api.signup_verified("other@example.com")
    assert_error(api.call("GET", f"/v1/market/listings/{fid}/price-history", other), 404, "not_found")


def test_a_stated_price_the_market_moves_back_leaves_no_review_behind(seller: Seller) -> None:
    """A seller sets a price far from the market on an auto-follow listing: the follow moves it back in the
    same change, so there is nothing to confirm and the listing stays routable."""
    seller.active(input_price_per_mtok="2", output_price_per_mtok="4")
    follow = {"mode": "lowest", "offset_pct": "-5"}
    fid = seller.create(input_price_per_mtok="2", output_price_per_mtok="4", auto_follow=follow)["id"]
    wait_until(lambda: seller.get(fid)["status"] == "active")
    moved = seller.patch(fid, output_price_per_mtok="9")
    assert moved["status"] == "active", moved
    assert _prices(moved) == (Decimal("1.9"), Decimal("3.8"))
    assert moved["confirmed_output_price_per_mtok"] == "3.8"
    # Without auto-follow the same move is held for confirmation, as before.
    fixed = seller.active(input_price_per_mtok="2", output_price_per_mtok="4")
    assert seller.patch(fixed["id"], output_price_per_mtok="9")["status"] == "price_review"


def test_prices_stated_with_a_multiplier_are_kept_until_a_reference_prices_the_listing(
    api: ControlPlane, seller: Seller
) -> None:
    model = "acme/unpriced-2"
    created = seller.create(
        model=model, input_price_per_mtok="1", output_price_per_mtok="2", price_multiplier="2"
    )
    lid = created["id"]
    assert _prices(created) == (Decimal("1"), Decimal("2"))
    assert created["pricing"]["reference_missing"] is True
    assert created["pricing"]["excluded"] == "reference_price_missing"
    assert [(e["source"], e["detail"]) for e in seller.history(lid)] == [("seller", "created")]
    operator = api.make_operator("ops@example.com")
    put = api.call(
        "PUT",
        f"/api/admin/reference-prices/{model}",
        operator,
        json={"input_price_per_mtok": "0.5", "output_price_per_mtok": "0.75"},
    )
    assert put.status_code == 200, put.text
    priced = seller.get(lid)
    assert _prices(priced) == (Decimal("1"), Decimal("1.5")) and priced["pricing"]["excluded"] is None
    # Leaving multiplier pricing keeps the current prices as fixed ones.
    fixed = seller.patch(lid, price_multiplier=None)
    assert fixed["pricing"]["mode"] == "fixed" and _prices(fixed) == (Decimal("1"), Decimal("1.5"))
    assert fixed["price_multiplier"] is None


def test_a_payout_floor_the_price_cannot_meet_is_shown_on_the_listing(seller: Seller) -> None:
    listing = seller.active(input_price_per_mtok="1", output_price_per_mtok="2")
    assert listing["pricing"]["payout_floor_met"] is True
    # 1 USD less the 10 % fee pays 0.9 per 1M input tokens: a floor of 0.95 cannot be met.
    floored = seller.patch(listing["id"], payout_floor_per_mtok="0.95")
    assert floored["pricing"]["payout_floor_met"] is False
    assert floored["pricing"]["excluded"] == "payout_below_floor"
    assert floored["pricing"]["lowest_payout_per_mtok"] == "0.9"
    assert floored["status"] == "active"  # its status is the seller's; the price keeps it unrouted
    raised = seller.patch(listing["id"], input_price_per_mtok="1.1")
    assert raised["pricing"]["payout_floor_met"] is True and raised["pricing"]["excluded"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"price_multiplier": "1.2", "auto_follow": {"mode": "median", "offset_pct": 0}}, "auto_follow"),
        ({"price_multiplier": "1.2", "cached_input_price_per_mtok": "0.1"}, "cached_input_price_per_mtok"),
        ({"input_price_per_mtok": "1"}, "output_price_per_mtok"),
        ({"price_multiplier": "0"}, "price_multiplier"),
        ({"price_multiplier": "101"}, "price_multiplier"),
        ({"input_price_per_mtok": "1", "output_price_per_mtok": "1", "payout_floor_per_mtok": "-1"}, None),
        (
            {"input_price_per_mtok": "1", "output_price_per_mtok": "1", "auto_follow": {"mode": "highest"}},
            "auto_follow.mode",
        ),
        (
            {"input_price_per_mtok": "1", "output_price_per_mtok": "1", "auto_follow": {"offset_pct": -95}},
            "auto_follow.offset_pct",
        ),
        (
            {
                "kind": "speech",
                "price_unit": "character",
                "price_multiplier": "1",
            },
            "price_multiplier",
        ),
    ],
)
def test_invalid_pricing_settings_are_400(
    api: ControlPlane, seller: Seller, body: dict[str, Any], param: str | None
) -> None:
    resp = api.call(
        "POST",
        "/v1/market/listings",
        seller.token,
        json={"pool_key_id": seller.pool_key_id, "model": MODEL, "upstream_model": "echo-1", **body},
    )
    err = assert_error(resp, 400, "invalid_request")
    if param is not None:
        assert err["param"] == param, err
    assert err["type"] == "invalid_request_error"


def test_invalid_pricing_changes_and_references_are_400(api: ControlPlane, seller: Seller) -> None:
    fixed = seller.create(input_price_per_mtok="1", output_price_per_mtok="1")
    follower = seller.create(
        input_price_per_mtok="1", output_price_per_mtok="1", auto_follow={"mode": "median", "offset_pct": 0}
    )
    multiple = seller.create(model="acme/unpriced-1", price_multiplier="1")  # a model with no reference

    def patch(listing_id: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = api.call("PATCH", f"/v1/market/listings/{listing_id}", seller.token, json=body)
        return assert_error(resp, 400, "invalid_request")

    assert patch(follower["id"], {"price_multiplier": "2"})["param"] == "price_multiplier"
    assert patch(multiple["id"], {"auto_follow": {"mode": "lowest"}})["param"] == "auto_follow"
    assert patch(multiple["id"], {"output_price_per_mtok": "3"})["param"] == "output_price_per_mtok"
    assert patch(fixed["id"], {"price_multiplier": "2", "input_price_per_mtok": "2"})["param"] == (
        "input_price_per_mtok"
    )
    # A multiplier listing that never had a reference has no prices to keep as fixed ones.
    assert patch(multiple["id"], {"price_multiplier": None})["param"] == "input_price_per_mtok"
    fixed_again = seller.patch(
        multiple["id"], price_multiplier=None, input_price_per_mtok="1", output_price_per_mtok="2"
    )
    assert fixed_again["pricing"] == {
        "mode": "fixed",
        "reference_missing": False,
        "lowest_payout_per_mtok": "0.9",
        "payout_floor_met": True,
        "excluded": None,
    }

    operator = api.make_operator("ops@example.com")
    path = f"/api/admin/reference-prices/{MODEL}"
    for body, param in (
        ({"input_price_per_mtok": "1"}, "output_price_per_mtok"),
        ({"input_price_per_mtok": "-1", "output_price_per_mtok": "1"}, "input_price_per_mtok"),
        (
            {"input_price_per_mtok": "1", "output_price_per_mtok": "1", "cached_input_price_per_mtok": "2"},
            None,
        ),
        ({"input_price_per_mtok": "1", "output_price_per_mtok": "1", "extra": 1}, "extra"),
    ):
        err = assert_error(api.call("PUT", path, operator, json=body), 400, "invalid_request")
        if param is not None:
            assert err["param"] == param, err
    ok = {"input_price_per_mtok": "1", "output_price_per_mtok": "1"}
    err = assert_error(api.call("PUT", path + "?kind=video", operator, json=ok), 400, "invalid_request")
    assert err["param"] == "kind"
    err = assert_error(
        api.call("PUT", "/api/admin/reference-prices/-bad", operator, json=ok), 400, "invalid_request"
    )
    assert err["param"] == "model"
    assert_error(api.call("PUT", path, operator, data=b"{not json"), 400, "invalid_request")
