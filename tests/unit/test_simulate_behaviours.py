"""The seller behaviour library in small markets: each kind does to the gateway what its name says, and
the gateway's own machinery answers it (fallback, health, continuation, the audit)."""

from __future__ import annotations

import random
from typing import Any

from dragonfly.simulate import Report, parse_scenario, run
from dragonfly.simulate.behaviours import PROBE_CHECKS
from dragonfly.simulate.scenario import Listing

MODEL = "acme/chat-1"


def _market(bad: dict[str, Any], profile: dict[str, Any] | None = None, duration_s: float = 1800) -> Report:
    """A bad listing (the cheapest: cost_first sends it traffic first) and two honest ones."""
    listings = [
        {"id": "bad", "seller": "bad-inc", "model": MODEL, "input_price": "0.4", "output_price": "1.2"},
        {"id": "ok-1", "seller": "one", "model": MODEL, "input_price": "0.5", "output_price": "1.5"},
        {"id": "ok-2", "seller": "two", "model": MODEL, "input_price": "0.6", "output_price": "1.8"},
    ]
    listings[0]["behaviour"] = bad
    return run(
        parse_scenario(
            {
                "name": "behaviour",
                "seed": 1,
                "duration_s": duration_s,
                "models": [{"id": MODEL}],
                "listings": listings,
                "profiles": [profile or {"id": "p", "strategy": "cost_first", "stream_share": 1.0}],
                "traffic": {"rate": 2},
            }
        )
    )


def test_flaky_seller_is_degraded_by_live_health_and_its_failures_fall_back() -> None:
    r = _market({"kind": "flaky", "failure_rate": [[0, 0.0], [600, 0.6]], "fails_as": "http_503"})
    (episode,) = r.listings["bad"].episodes
    assert (episode.start_s, episode.end_s) == (600, 1800)
    assert episode.degraded_after_s is not None and episode.degraded_after_s < 120
    p = r.profiles["p"]
    assert p.fallbacks > 0 and p.success_rate is not None and p.success_rate > 0.99
    assert any(h["listing"] == "bad" and h["to"] == "degraded" for h in r.health)


def test_a_stream_that_dies_goes_on_at_another_listing_and_each_part_is_billed() -> None:
    r = _market({"kind": "dies_mid_stream", "rate": 1.0})
    p = r.profiles["p"]
    assert p.continuations > 0
    assert r.trades > r.requests  # the broken parts are trades of their own
    assert p.success_rate is not None and p.success_rate > 0.99
    assert r.listings["bad"].seller_usd > 0  # it is paid for what it delivered
    assert r.listings["bad"].final_status != "active"  # broken streams are failures to health


def test_without_fallback_a_broken_stream_ends_failed() -> None:
    profile = {"id": "p", "strategy": "cost_first", "stream_share": 1.0, "fallback": {"enabled": False}}
    r = _market({"kind": "dies_mid_stream", "rate": 1.0}, profile, duration_s=120)
    p = r.profiles["p"]
    assert p.continuations == 0 and p.errors.get("upstream_error", 0) > 0


def test_a_substituting_seller_answers_faster_and_is_counted_as_bad_traffic() -> None:
    r = _market({"kind": "substitutes", "cheaper_model": "acme/mini", "from_s": 300}, duration_s=900)
    p = r.profiles["p"]
    assert p.bad_traffic_share is not None and p.bad_traffic_share > 0.5  # nothing in the gateway sees it
    assert r.health == []


def test_timeouts_cost_the_read_timeout_before_the_fallback() -> None:
    r = _market({"kind": "outage", "windows": [[0, 60]], "fails_as": "timeout"}, duration_s=300)
    p = r.profiles["p"]
    assert p.ttft_ms_p99 is not None and p.ttft_ms_p99 >= 60_000
    assert p.success_rate is not None and p.success_rate > 0.99


def test_probes_fail_while_out_and_pass_after() -> None:
    out = Listing.model_validate(
        {
            "id": "x",
            "seller": "s",
            "model": MODEL,
            "input_price": "1",
            "output_price": "1",
            "behaviour": {"kind": "outage", "windows": [[10, 20]]},
        }
    ).behaviour
    rng = random.Random(0)
    assert [out.probe(t, rng) for t in (5, 15, 25)] == [PROBE_CHECKS, 0, PROBE_CHECKS]
