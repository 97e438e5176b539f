"""GET /api/admin/routing/activity over HTTP: decisions a data-plane recorder wrote into the shared
database (a real RoutingActivity over a real native Market), read back by the control plane, filtered by
model and profile, newest first, with candidates, scores, features, weights and why each one lost."""

from __future__ import annotations

import asyncio
from typing import Any

from control_plane_support import ControlPlane, assert_error

from dragonfly.gateway.activity import RoutingActivity
from dragonfly.native.market import Market
from dragonfly.storage.sql import open_database

NOW = 1_767_000_000_000


def _market() -> Market:
    m = Market()
    for lid, inp, out, status in (
        ("first", 100_000, 200_000, "active"),
        ("second", 300_000, 600_000, "active"),
        ("third", 900_000, 1_800_000, "active"),
        ("off", 10_000, 20_000, "paused"),
    ):
        m.upsert_listing(lid, "acme/chat", "custom", f"seller-{lid}", inp, out, None, None, status, "active")
    m.upsert_listing("other", "acme/embed", "custom", "seller-x", 1, 1, None, None, "active", "active")
    m.set_profile("prof-a", strategy="cost_first")
    m.set_profile("prof-b", strategy="balanced")
    return m


def _write_decisions(database_url: str) -> None:
    """What a data plane records: the same (model, profile) twice only after the sampling interval."""

    async def run() -> None:
        db = await open_database(database_url, migrate=False)
        try:
            activity = RoutingActivity(_market(), lambda: db, interval_s=0.0)
            record = activity.record
            record(
                model="acme/chat",
                profile_id="prof-a",
                strategy="cost_first",
                now_ms=NOW,
                seed=1,
                chosen_listing_id="first",
                outcome="completed",
                error_code=None,
                trade_id="trade-1",
            )
            # Fell back: the top-ranked listing failed, the second served the request.
            record(
                model="acme/chat",
                profile_id="prof-a",
                strategy="cost_first",
                now_ms=NOW + 1,
                seed=2,
                chosen_listing_id="second",
                outcome="completed",
                error_code=None,
                trade_id="trade-2",
            )
            record(
                model="acme/chat",
                profile_id="prof-b",
                strategy="balanced",
                now_ms=NOW + 2,
                seed=3,
                chosen_listing_id=None,
                outcome="refused",
                error_code="rate_limited",
            )
            record(
                model="acme/embed",
                profile_id="prof-a",
                strategy="cost_first",
                now_ms=NOW + 3,
                seed=4,
                chosen_listing_id=None,
                outcome="failed",
                error_code="upstream_error",
            )
            await activity.close()
        finally:
            await db.close()

    asyncio.run(run())


def _by_id(candidates: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["listing_id"]: c for c in candidates}


def test_activity_lists_recorded_decisions_newest_first(api: ControlPlane) -> None:
    operator = api.make_operator("ops@example.com")
    assert api.call("GET", "/api/admin/routing/activity", operator).json() == {"data": []}
    _write_decisions(api.database_url)

    every = api.call("GET", "/api/admin/routing/activity", operator)
    assert every.status_code == 200, every.text
    data = every.json()["data"]
    assert [(d["model"], d["profile_id"]) for d in data] == [
        ("acme/embed", "prof-a"),
        ("acme/chat", "prof-b"),
        ("acme/chat", "prof-a"),
        ("acme/chat", "prof-a"),
    ]
    assert [d["at"] for d in data][-1] == "2025-12-29T09:20:00.000Z"

    chat_a = api.call("GET", "/api/admin/routing/activity?model=acme/chat&profile_id=prof-a", operator)
    fell_back, direct = chat_a.json()["data"]
    assert (direct["trade_id"], direct["strategy"], direct["outcome"]) == (
        "trade-1",
        "cost_first",
        "completed",
    )
    assert direct["chosen_listing_id"] == "first" and direct["listings"] == 4 and direct["seed"] == 1
    assert direct["instance"] and direct["error_code"] is None
    cands = _by_id(direct["candidates"])
    assert [c["listing_id"] for c in direct["candidates"]] == ["first", "second", "third", "off"]
    assert cands["first"]["chosen"] is True and cands["first"]["lost_because"] is None
    assert cands["first"]["rank"] == 0
    assert (
        cands["second"]["lost_because"] == "lower_score" and cands["third"]["lost_because"] == "lower_score"
    )
    assert cands["off"]["rank"] is None and cands["off"]["lost_because"] == "status_paused"
    assert cands["first"]["score"] > cands["second"]["score"] > cands["third"]["score"]
    for c in direct["candidates"]:
        assert set(c) == {
            "listing_id",
            "rank",
            "chosen",
            "excluded",
            "lost_because",
            "score",
            "features",
            "weights",
            "penalties",
        }
        # The feature names are the native core's (python/dragonfly/native/market.py FEATURES).
        assert c["features"] and set(c["features"]) == set(c["weights"])
    # The second request served from its second-ranked listing: the first one lost by fallback.
    fb = _by_id(fell_back["candidates"])
    assert fell_back["chosen_listing_id"] == "second"
    assert fb["first"]["lost_because"] == "fallback" and fb["third"]["lost_because"] == "lower_score"

    refused = api.call("GET", "/api/admin/routing/activity?profile_id=prof-b", operator).json()["data"]
    assert len(refused) == 1
    assert (refused[0]["outcome"], refused[0]["error_code"]) == ("refused", "rate_limited")
    assert {c["lost_because"] for c in refused[0]["candidates"] if c["rank"] is not None} == {"not_used"}

    one = api.call("GET", "/api/admin/routing/activity?limit=1", operator).json()["data"]
    assert [d["model"] for d in one] == ["acme/embed"]
    assert api.call("GET", "/api/admin/routing/activity?model=nope", operator).json() == {"data": []}
    for bad in ("0", "101", "x"):
        resp = api.call("GET", f"/api/admin/routing/activity?limit={bad}", operator)
        assert assert_error(resp, 400, "invalid_request")["param"] == "limit"
