"""Each shipped scenario's expected outcome (python/dragonfly/simulate/scenarios/): a change to routing,
health, the audit, billing or pricing that makes the simulated market worse fails here. Long scenarios
run over a fraction of their time (`Scenario.scaled`); each run takes a second or two."""

from __future__ import annotations

from functools import cache

import pytest

from dragonfly.simulate import SCENARIOS, Report, load_scenario, run


@cache
def _report(name: str, scale: float = 1.0) -> Report:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    return run(scenario if scale == 1.0 else scenario.scaled(scale))


def test_every_shipped_scenario_is_tested() -> None:
    shipped = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    assert shipped == ["inflating_seller", "normal_day", "price_war", "seller_outage", "slow_seller"]
    for name in shipped:
        assert load_scenario(SCENARIOS / f"{name}.toml").expect.summary


def test_normal_day_every_request_completes_and_each_strategy_buys_what_it_asks_for() -> None:
    r = _report("normal_day", 0.1)
    assert r.requests > 8_000
    bulk, apps, ui = r.profiles["bulk"], r.profiles["apps"], r.profiles["chat-ui"]
    for p in (bulk, apps, ui):
        assert p.success_rate is not None and p.success_rate >= 0.999
        assert p.bad_traffic_share == 0.0
    assert r.health == [] and r.alarms == []  # honest sellers: no ejection, no false alarm
    assert bulk.cost_per_mtok_usd is not None and apps.cost_per_mtok_usd is not None
    assert ui.cost_per_mtok_usd is not None
    assert bulk.cost_per_mtok_usd < apps.cost_per_mtok_usd < ui.cost_per_mtok_usd
    assert ui.ttft_ms_p50 is not None and apps.ttft_ms_p50 is not None
    assert ui.ttft_ms_p50 < apps.ttft_ms_p50


def test_seller_outage_is_ejected_within_a_minute_and_buyers_barely_notice() -> None:
    r = _report("seller_outage")
    beta = r.listings["beta"]
    (episode,) = beta.episodes
    assert (episode.start_s, episode.end_s) == (1800, 3600)
    assert episode.share_before is not None and episode.share_before > 0.5
    assert episode.share_during is not None and episode.share_during < 0.05
    assert episode.degraded_after_s is not None and episode.degraded_after_s <= 60
    assert episode.suspended_after_s is not None and episode.suspended_after_s <= 90
    # Back after the outage: re-probed on probation, then active.
    assert episode.recovered_after_s is not None and episode.recovered_after_s <= 600
    assert beta.final_status == "active"
    for p in r.profiles.values():
        assert p.success_rate is not None and p.success_rate >= 0.995
        assert p.bad_traffic_share is not None and p.bad_traffic_share < 0.01
    assert r.profiles["bulk"].fallbacks > 0  # the calls that hit it were served elsewhere


def test_slow_seller_keeps_cost_first_but_loses_the_latency_weighted_profile() -> None:
    r = _report("slow_seller")
    bulk, interactive = r.profiles["bulk"], r.profiles["interactive"]
    assert bulk.bad_traffic_share is not None and bulk.bad_traffic_share > 0.5
    assert interactive.bad_traffic_share is not None and interactive.bad_traffic_share < 0.02
    assert interactive.hedges > 0  # hedges won the races against it
    assert interactive.ttft_ms_p99 is not None and bulk.ttft_ms_p99 is not None
    assert interactive.ttft_ms_p99 < bulk.ttft_ms_p99 / 2
    # Slow is not failed: health does not touch it.
    assert r.listings["cheap"].final_status == "active"
    assert not [h for h in r.health if h["listing"] == "cheap"]


def test_inflating_sellers_are_flagged_and_billed_honestly_where_the_count_is_exact() -> None:
    r = _report("inflating_seller", 0.5)
    exact, estimated = r.listings["inflater-chat"].audit, r.listings["inflater-llama"].audit
    assert exact is not None and estimated is not None
    # The market-relative audit finds both, and no honest seller.
    assert {a["seller"] for a in r.alarms} == {"inflater"}
    assert exact.trades_to_flag is not None and exact.trades_to_flag <= 200
    assert estimated.trades_to_flag is not None and estimated.trades_to_flag <= 400
    # Exact count: the 30 % is not billed, only the 2 % + 4 tokens of slack at most.
    assert exact.reported_tokens > exact.counted_tokens * 1.03  # prompts are reported as counted
    assert exact.overbilled_share is not None and exact.overbilled_share <= 0.025
    # Estimated count: the report stands, above what the honest sellers bill over the same count.
    assert estimated.overbilled_share is not None and estimated.peers_overbilled_share is not None
    assert estimated.overbilled_share > estimated.peers_overbilled_share + 0.01  # 6 % of completions


def test_price_war_ends_at_the_floor_and_buyers_pay_less() -> None:
    r = _report("price_war")
    a, b = r.listings["war-a"], r.listings["war-b"]
    assert (b.final_input_price, b.final_output_price) == (0.35, 0.35)
    assert (a.final_input_price, a.final_output_price) == (0.343, 0.343)
    assert r.listings["fixed"].final_input_price == 0.5
    assert r.price_moves > 2
    bulk = r.profiles["bulk"]
    assert bulk.legs_by_listing["war-a"] > 2 * bulk.legs_by_listing["war-b"]
    assert r.seller_revenue_share["a-corp"] > r.seller_revenue_share["b-corp"]
    charge = r.timeline["profiles"]["bulk"]["charge_micros"]
    requests = r.timeline["profiles"]["bulk"]["requests"]
    first = sum(charge[:8]) / sum(requests[:8])
    last = sum(charge[-8:]) / sum(requests[-8:])
    assert last < 0.8 * first


@pytest.mark.parametrize("name", ["seller_outage", "price_war"])
def test_a_scaled_scenario_keeps_its_rates(name: str) -> None:
    full, half = (
        load_scenario(SCENARIOS / f"{name}.toml"),
        load_scenario(SCENARIOS / f"{name}.toml").scaled(0.5),
    )
    assert half.duration_s == full.duration_s / 2
    assert half.traffic.rate.at(0) == full.traffic.rate.at(0)
