"""Listing ranking: filters always hold, strategies order the way they say, seeds are reproducible."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly.native.market import STRATEGIES, Market, MarketError

MODEL = "gpt-4o"
listing_st = st.fixed_dictionaries(
    {
        "input_price": st.integers(0, 20_000_000),
        "output_price": st.integers(0, 80_000_000),
        "provider": st.sampled_from(["openai", "azure", "groq", "together"]),
        "seller": st.sampled_from(["s1", "s2", "s3"]),
        "status": st.sampled_from(
            ["active", "active", "active", "pending", "paused", "price_review", "suspended"]
        ),
        "contract": st.sampled_from(["active", "active", "degraded", "suspended", "pending"]),
        "cap": st.none() | st.integers(1, 4),
        "inflight": st.integers(0, 5),
        "quality": st.floats(0, 1),
        "ttft": st.none() | st.floats(50, 5000),
        "tps": st.none() | st.floats(5, 300),
        "ok": st.booleans(),
    }
)


def build(listings: list[dict[str, object]]) -> Market:
    m = Market()
    for i, spec in enumerate(listings):
        lid = f"l{i}"
        m.upsert_listing(
            lid,
            MODEL,
            spec["provider"],  # type: ignore[arg-type]
            spec["seller"],  # type: ignore[arg-type]
            spec["input_price"],  # type: ignore[arg-type]
            spec["output_price"],  # type: ignore[arg-type]
            None,
            spec["cap"],  # type: ignore[arg-type]
            spec["status"],  # type: ignore[arg-type]
            spec["contract"],  # type: ignore[arg-type]
            spec["quality"],  # type: ignore[arg-type]
        )
        m.set_inflight(lid, spec["inflight"])  # type: ignore[arg-type]
        m.record_result(lid, spec["ok"], spec["ttft"], spec["tps"], 1_000)  # type: ignore[arg-type]
    return m


@settings(max_examples=200, deadline=None)
@given(
    listings=st.lists(listing_st, max_size=25),
    strategy=st.sampled_from([s for s in STRATEGIES if s != "custom"]),
    max_in=st.none() | st.integers(0, 20_000_000),
    max_out=st.none() | st.integers(0, 80_000_000),
    deny=st.lists(st.sampled_from(["openai", "azure", "groq"]), max_size=2),
    sellers_deny=st.lists(st.sampled_from(["s1", "s2"]), max_size=1),
    seed=st.integers(0, 2**64 - 1),
)
def test_filters_always_hold(
    listings: list[dict[str, object]],
    strategy: str,
    max_in: int | None,
    max_out: int | None,
    deny: list[str],
    sellers_deny: list[str],
    seed: int,
) -> None:
    m = build(listings)
    m.set_profile(
        "p",
        strategy,
        providers_deny=deny,
        sellers_deny=sellers_deny,
        max_input_price=max_in,
        max_output_price=max_out,
    )
    ranked = m.rank(MODEL, "p", 2_000, seed, limit=100)
    assert len(ranked) == len(set(ranked))
    for lid in ranked:
        spec = listings[int(lid[1:])]
        assert max_in is None or spec["input_price"] <= max_in  # type: ignore[operator]
        assert max_out is None or spec["output_price"] <= max_out  # type: ignore[operator]
        assert spec["status"] == "active"
        assert spec["contract"] != "suspended"
        assert spec["cap"] is None or spec["inflight"] < spec["cap"]  # type: ignore[operator]
        assert spec["provider"] not in deny
        assert spec["seller"] not in sellers_deny
    eligible = {row["listing_id"] for row in m.explain(MODEL, "p", 2_000, seed) if row["excluded"] is None}
    assert set(ranked) == eligible
    assert ranked == m.rank(MODEL, "p", 2_000, seed, limit=100), "same seed, same order"


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.integers(0, 60), min_size=2, max_size=12, unique=True), seed=st.integers(0, 2**32))
def test_cost_first_picks_cheapest_healthy_listing(steps: list[int], seed: int) -> None:
    m = Market()
    # Prices at least 6% apart (closer prices are near-ties, spread by the seeded draw); equal health.
    prices = [round(100 * 1.06**k) for k in steps]
    for i, p in enumerate(prices):
        m.upsert_listing(
            f"l{i}", MODEL, "openai", "s", p * 100_000, p * 400_000, None, None, "active", "active"
        )
        m.record_result(f"l{i}", True, 300.0, 80.0, 0)
    m.set_profile("cheap", "cost_first")
    cheapest = min(range(len(prices)), key=lambda i: prices[i])
    assert m.rank(MODEL, "cheap", 0, seed)[0] == f"l{cheapest}"


@pytest.mark.parametrize(
    ("feature", "better", "worse"),
    [("price", "cheap", "fast"), ("latency", "fast", "cheap")],
)
def test_raising_a_weight_moves_the_ranking_its_way(feature: str, better: str, worse: str) -> None:
    m = Market()
    m.upsert_listing("cheap", MODEL, "a", "s1", 1_000_000, 4_000_000, None, None, "active", "active")
    m.upsert_listing("fast", MODEL, "b", "s2", 2_000_000, 8_000_000, None, None, "active", "active")
    m.record_result("cheap", True, 2_000.0, 50.0, 0)
    m.record_result("fast", True, 200.0, 50.0, 0)
    weights = {"price": 1.0, "latency": 1.0, "throughput": 0.0, "reliability": 0.0, "quality": 0.0}
    weights[feature] = 10.0
    m.set_profile("c", "custom", weights=weights)
    assert m.rank(MODEL, "c", 0, 7) == [better, worse]


def test_operator_strategy_weights_apply_to_existing_profiles() -> None:
    m = Market()
    m.upsert_listing("cheap", MODEL, "a", "s1", 1_000_000, 4_000_000, None, None, "active", "active")
    m.upsert_listing("good", MODEL, "b", "s2", 2_000_000, 8_000_000, None, None, "active", "active", 1.0)
    m.set_profile("b", "balanced")
    m.set_strategy_weights(
        "balanced", {"price": 0.0, "quality": 1.0, "latency": 0, "throughput": 0, "reliability": 0}
    )
    assert m.rank(MODEL, "b", 0, 1)[0] == "good"
    m.set_strategy_weights("balanced", {"price": 1.0, "quality": 0.0})
    assert m.rank(MODEL, "b", 0, 1)[0] == "cheap"


def test_near_ties_spread_by_seed_and_repeat_per_seed() -> None:
    m = Market()
    for i in range(10):
        m.upsert_listing(f"l{i}", MODEL, "a", "s", 1_000_000, 4_000_000, None, None, "active", "active")
    m.set_profile("b", "balanced")
    firsts = {m.rank(MODEL, "b", 0, seed, limit=1)[0] for seed in range(100)}
    assert len(firsts) >= 5
    assert m.rank(MODEL, "b", 0, 99) == m.rank(MODEL, "b", 0, 99)


def test_degraded_contract_is_deprioritised_not_excluded() -> None:
    m = Market()
    m.upsert_listing("ok", MODEL, "a", "s1", 2_000_000, 8_000_000, None, None, "active", "active")
    m.upsert_listing("deg", MODEL, "a", "s2", 1_000_000, 4_000_000, None, None, "active", "degraded")
    m.set_profile("c", "cost_first")
    assert m.rank(MODEL, "c", 0, 1) == ["ok", "deg"]
    row = next(r for r in m.explain(MODEL, "c", 0, 1) if r["listing_id"] == "deg")
    assert row["penalties"] == ["contract_degraded"]


def test_full_capacity_is_excluded_until_a_slot_frees() -> None:
    m = Market()
    m.upsert_listing("x", MODEL, "a", "s", 1, 1, None, 2, "active", "active")
    m.set_profile("b", "balanced")
    m.set_inflight("x", 2)
    assert m.rank(MODEL, "b", 0, 0) == []
    assert m.explain(MODEL, "b", 0, 0)[0]["excluded"] == "capacity_full"
    m.set_inflight("x", 1)
    assert m.rank(MODEL, "b", 0, 0) == ["x"]


def test_provider_allow_list() -> None:
    m = Market()
    m.upsert_listing("x", MODEL, "openai", "s", 1, 1, None, None, "active", "active")
    m.upsert_listing("y", MODEL, "groq", "s", 1, 1, None, None, "active", "active")
    m.set_profile("only-groq", "balanced", providers_allow=["groq"])
    assert m.rank(MODEL, "only-groq", 0, 0) == ["y"]


def test_recent_failure_lowers_reliability_then_recovers() -> None:
    m = Market()
    m.upsert_listing("x", MODEL, "a", "s", 1, 1, None, None, "active", "active")
    m.record_result("x", False, None, None, 10_000)
    m.set_profile("b", "balanced")
    just_after = m.explain(MODEL, "b", 10_000, 0)[0]
    later = m.explain(MODEL, "b", 100_000, 0)[0]
    assert just_after["features"]["reliability"] < later["features"]["reliability"]
    assert "recent_failure" in just_after["penalties"]


def test_errors() -> None:
    m = Market()
    with pytest.raises(MarketError, match="unknown routing profile"):
        m.rank(MODEL, "missing", 0, 0)
    with pytest.raises(MarketError, match="strategy"):
        m.set_profile("p", "fastest")
    with pytest.raises(MarketError, match="custom"):
        m.set_profile("p", "custom")
    with pytest.raises(MarketError, match="unknown weight"):
        m.set_profile("p", "balanced", weights={"speed": 1.0})
    with pytest.raises(MarketError, match="status"):
        m.upsert_listing("x", MODEL, "a", "s", 1, 1, None, None, "live", "active")
    with pytest.raises(MarketError, match="quality"):
        m.upsert_listing("x", MODEL, "a", "s", 1, 1, None, None, "active", "active", 2.0)
    with pytest.raises(MarketError, match="ttft_ms"):
        m.upsert_listing("x", MODEL, "a", "s", 1, 1, None, None, "active", "active")
        m.record_result("x", True, -1.0, None, 0)
    assert m.record_result("gone", True, None, None, 0) is False
    assert m.remove_listing("x") and not m.remove_listing("x")
    assert m.remove_profile("nope") is False
