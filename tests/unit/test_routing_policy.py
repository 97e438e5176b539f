"""The data plane's router over the real native market: one weight vocabulary from the API schema to the
scorer, operator weights and listing quality applied at snapshot load, and a profile the market refuses
excluded (503), never routed under another strategy."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from support.listings import listing_info, snapshot_of

from dragonfly.api.schemas.profiles import Weights
from dragonfly.domain.quality import NEUTRAL_QUALITY, market_quality, probe_quality, run_score
from dragonfly.errors import NoListingMatchesProfile
from dragonfly.gateway.routing import Router
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo, Snapshot
from dragonfly.native.market import FEATURES, Market, MarketError, default_strategy_weights, register_profile

MODEL = "demo/echo-1"


def _listing(lid: str, price: int, **extra: Any) -> ListingInfo:
    return listing_info(
        lid, seller_id=f"seller-{lid}", model=MODEL, input_price=price, output_price=price, **extra
    )


def _snapshot(
    listings: list[ListingInfo],
    profiles: list[ProfileInfo],
    weights: dict[str, dict[str, float]] | None = None,
) -> Snapshot:
    return snapshot_of(listings, profiles, weights)


def _custom(pid: str, weights: Any) -> ProfileInfo:
    return ProfileInfo(pid, "buyer", "custom", {"weights": weights})


def test_one_weight_vocabulary_from_api_to_scorer() -> None:
    assert tuple(Weights.model_fields) == FEATURES
    m = Market()
    assert all(tuple(w) == FEATURES for w in default_strategy_weights().values())
    m.upsert_listing("x", MODEL, "p", "s", 1, 1, None, None, "active", "active")
    register_profile(m, "c", "custom", {"weights": Weights(latency=1).model_dump()})
    row = m.explain(MODEL, "c", 0, 0)[0]
    assert tuple(row["features"]) == FEATURES and row["weights"]["latency"] == 1.0
    with pytest.raises(MarketError, match="unknown weight"):
        register_profile(m, "old", "custom", {"weights": {"ttft": 1.0}})
    # A legacy non-custom profile's stored weights are not used: it ranks with its strategy's weights.
    register_profile(m, "cf", "cost_first", {"weights": {"quality": 1.0}})
    assert m.explain(MODEL, "cf", 0, 0)[0]["weights"]["price"] == pytest.approx(0.70)


def test_a_profile_the_market_refuses_is_excluded_not_rerouted(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()
    cheap, dear = _listing("cheap", 1_000_000), _listing("dear", 2_000_000)
    broken = [_custom("no-weights", None), _custom("legacy", {"ttft": 1.0}), _custom("zero", {"price": 0})]
    with caplog.at_level(logging.ERROR, logger="dragonfly.gateway.routing"):
        router.load(_snapshot([cheap, dear], broken))
    assert sum("cannot be registered" in r.getMessage() for r in caplog.records) == 3
    snap = _snapshot([cheap, dear], broken)
    for profile in broken:
        with pytest.raises(NoListingMatchesProfile) as refused:
            router.candidates(snap, profile, MODEL, "chat", 0, 1, 8)
        assert refused.value.status == 503 and refused.value.code == "no_listing_matches_profile"
        # A key bound to it, used beside a named profile (gateway/override.py), admits nothing either.
        assert router.market.rank(MODEL, profile.id, 0, 1, 8) == []
    fixed = _custom("legacy", {"price": 1.0})
    snap = _snapshot([cheap, dear], [fixed])
    router.load(snap)
    assert [x.id for x in router.candidates(snap, fixed, MODEL, "chat", 0, 1, 8)] == ["cheap", "dear"]


def test_operator_weights_apply_at_load_and_reset_to_defaults() -> None:
    router = Router()
    cheap = _listing("cheap", 1_000_000, quality_override=0.0)
    good = _listing("good", 2_000_000, quality_override=1.0)
    balanced = ProfileInfo("b", "buyer", "balanced", {})
    quality_only = {"price": 0.0, "latency": 0.0, "throughput": 0.0, "reliability": 0.0, "quality": 1.0}
    router.load(_snapshot([cheap, good], [balanced], {"balanced": quality_only}))
    assert router.market.strategy_weights("balanced") == quality_only
    snap = _snapshot([cheap, good], [balanced])
    assert router.candidates(snap, balanced, MODEL, "chat", 0, 1, 8)[0].id == "good"
    router.load(snap)  # the stored row is gone: the native defaults again
    assert router.market.strategy_weights("balanced") == default_strategy_weights()["balanced"]
    assert router.candidates(snap, balanced, MODEL, "chat", 0, 1, 8)[0].id == "cheap"


def test_listing_quality_reaches_the_market() -> None:
    router = Router()
    probed = _listing("probed", 1_000_000, probe_quality=0.8)
    pinned = _listing("pinned", 1_000_000, probe_quality=0.8, quality_override=0.3)
    fresh = _listing("fresh", 1_000_000)
    profile = ProfileInfo("q", "buyer", "quality_first", {})
    router.load(_snapshot([probed, pinned, fresh], [profile]))
    quality = {r["listing_id"]: r["features"]["quality"] for r in router.market.explain(MODEL, "q", 0, 0)}
    assert quality == {"probed": 0.8, "pinned": 0.3, "fresh": NEUTRAL_QUALITY}
    for lid in ("probed", "pinned"):
        router.market.record_result(lid, False, None, None, 0)  # success EWMA 1.0 -> 0.9
    quality = {r["listing_id"]: r["features"]["quality"] for r in router.market.explain(MODEL, "q", 0, 0)}
    assert quality["probed"] == pytest.approx((0.8 + 0.9) / 2) and quality["pinned"] == 0.3


def test_quality_formula() -> None:
    ok, bad = {"kind": "a", "passed": True}, {"kind": "b", "passed": False}
    assert run_score([ok, ok, ok, bad]) == 0.75 and run_score([]) == 0.0
    assert probe_quality([[ok], [ok, bad]]) == 0.75 and probe_quality([]) is None
    assert market_quality(None, None) == (NEUTRAL_QUALITY, True)
    assert market_quality(0.9, None) == (0.9, True)
    assert market_quality(0.9, 0.1) == (0.1, False)
    assert market_quality(1.5, None) == (1.0, True) and market_quality(None, float("nan")) == (0.5, False)


def test_a_refusal_says_do_not_retry_only_when_nothing_live_could_lift_it() -> None:
    listing = _listing("a", 1_000_000, concurrency_cap=1)
    ceiling = ProfileInfo("p-price", "acct", "balanced", {"max_input_price": 10})
    plain = ProfileInfo("p-plain", "acct", "balanced", {})
    router = Router()
    snap = _snapshot([listing], [ceiling, plain])
    router.load(snap)
    # Excluded by a price ceiling: static, the same request will be refused again.
    with pytest.raises(NoListingMatchesProfile) as exc:
        router.candidates(snap, ceiling, MODEL, "chat", 1_000, 1, 5)
    assert exc.value.headers == {"x-should-retry": "false"}
    # Excluded because its one concurrency slot is taken: that passes, so the SDK may retry.
    router.market.set_inflight("a", 1)
    with pytest.raises(NoListingMatchesProfile) as exc:
        router.candidates(snap, plain, MODEL, "chat", 1_000, 1, 5)
    assert "x-should-retry" not in exc.value.headers and exc.value.headers["retry-after"] == "1"


def _ranked(router: Router, profile_id: str) -> list[str]:
    return [
        r["listing_id"]
        for r in sorted(router.market.explain(MODEL, profile_id, 0, 0), key=lambda r: -r["score"])
    ]


def test_a_listing_new_to_the_market_starts_from_its_probe_ttft_not_the_average_of_the_others() -> None:
    router = Router()
    profile = _custom("fast", {"latency": 1.0})
    slow, mid = _listing("slow", 1_000_000), _listing("mid", 1_000_000)
    router.load(_snapshot([slow, mid], [profile]))
    for _ in range(20):
        router.market.record_result("slow", True, 400.0, None, 0)
        router.market.record_result("mid", True, 200.0, None, 0)
    # Without a probe figure a newcomer gets the others' average (300 ms): behind `mid` for ever, so it
    # would never be tried and never measured.
    unprobed = _listing("unprobed", 1_000_000)
    router.load(_snapshot([slow, mid, unprobed], [profile]))
    assert _ranked(router, "fast")[0] == "mid"
    # Its passed probe answered in 100 ms: the newcomer ranks first and gets the traffic that measures it.
    probed = _listing("probed", 1_000_000, probe_ttft_ms=100)
    router.load(_snapshot([slow, mid, unprobed, probed], [profile]))
    assert _ranked(router, "fast")[0] == "probed"
    # Live samples take over; a later load does not put the probe figure back.
    for _ in range(30):
        router.market.record_result("probed", True, 600.0, None, 0)
    router.load(_snapshot([slow, mid, unprobed, probed], [profile]))
    assert _ranked(router, "fast")[0] == "mid"
