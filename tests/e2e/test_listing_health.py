"""Health that acts, end to end (both storage backends, `dragonfly serve` as a subprocess, the `openai`
SDK, real fake sellers): a listing honest at admission that then fails is degraded within seconds and
loses the first attempts of a cost_first profile to the pricier healthy listing, is suspended when it
keeps failing, and comes back once it recovers — through the background re-probe, or the seller's
reverify / unsuspend (which cannot lift an operator's suspension). The seller reads every transition and
its evidence in the check history; the books stay clean."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from support.health_market import HealthMarket, open_market, operator, seed_two_sellers
from support.market import market_settings, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

DEGRADED_WITHIN_S = 5.0


@pytest.fixture
def health_market(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> Callable[[dict[str, str]], HealthMarket]:
    def start(env: dict[str, str]) -> HealthMarket:
        settings = market_settings(database_url, tmp_path / "data")
        cheap, pricey = demo_seller_factory(), demo_seller_factory()
        ids = seed_two_sellers(settings, cheap, pricey)
        redis_url = None
        if database_url.startswith("postgresql"):
            redis_url = str(request.getfixturevalue("fresh_redis_url"))
            env = {**env, "DRAGONFLY_REDIS_URL": redis_url}
        origin = start_serve(processes, settings, extra_env=env)
        return open_market(origin, settings, redis_url, cheap, ids)

    return start


def _degrade(m: HealthMarket) -> None:
    """CHEAP starts failing with 503 after admission: buyers still get answers (fallback to PRICEY)
    and CHEAP's contract is degraded within seconds."""
    assert m.chat().served_by == m.cheap
    m.cheap_seller.config.fail_status = 503
    sent: list[int] = []
    m.wait_for("degraded", DEGRADED_WITHIN_S, between=lambda: sent.append(m.chat().status))
    assert set(sent) == {200} and len(sent) <= 8, sent
    (entry,) = [c for c in m.checks() if c["kind"] == "health:degraded"]
    assert not entry["passed"]
    assert re.search(r"5 failed calls in a row \(last: http_503\)", entry["detail"]), entry["detail"]
    # The window also holds the warm-up success; PRICEY answered the fallbacks.
    assert "last 30 s: 1 ok, 5 failed (17 %)" in entry["detail"], entry["detail"]
    market = r"the model's other listings: [45] ok, 0 failed \(100 %\)"
    assert re.search(market, entry["detail"]), entry["detail"]
    assert m.contract()["reason"].startswith("health: 5 failed calls in a row")


def test_failing_listing_is_degraded_suspended_and_reprobed_back(
    health_market: Callable[[dict[str, str]], HealthMarket],
) -> None:
    m = health_market({"DRAGONFLY_HEALTH_BASE_EJECTION_S": "1", "DRAGONFLY_HEALTH_MAX_EJECTION_S": "3"})
    _degrade(m)
    # Deprioritised: at most 2 of the next 10 first attempts go to CHEAP, and every buyer is answered.
    tries = [m.chat() for _ in range(10)]
    assert {t.status for t in tries} == {200}
    assert sum(t.first == m.cheap for t in tries) <= 2, tries

    # Still failing: the re-probe after the base ejection time fails and suspends it (1 of 2 listings).
    m.wait_for("suspended", 10.0)
    assert re.match(
        r"health: re-probe failed: ejection \d+ \(chat_completion: unexpected HTTP 503\)",
        m.contract()["reason"],
    )
    tries = [m.chat() for _ in range(3)]
    assert all(t.first == m.pricey and t.status == 200 for t in tries), tries

    # It recovers: the next re-probe puts it on probation (degraded), the one after makes it active.
    m.cheap_seller.config.fail_status = None
    m.wait_for("active", 20.0)
    for _ in range(50):
        if m.chat().first == m.cheap:
            break
    else:
        raise AssertionError("the recovered listing never took a first attempt again")

    reprobes = [c["detail"] for c in m.checks() if c["kind"] == "health:reprobe"]
    assert any(d.startswith("degraded -> suspended: re-probe failed: ejection 1") for d in reprobes), reprobes
    assert any(d.startswith("suspended -> degraded: re-probe passed") for d in reprobes), reprobes
    assert any(d.startswith("degraded -> active: re-probe passed") for d in reprobes), reprobes
    m.assert_books_clean()


def test_seller_reverifies_and_unsuspends_but_not_an_operator_suspension(
    health_market: Callable[[dict[str, str]], HealthMarket],
) -> None:
    # A long ejection time: only the seller brings the listing back in this test.
    m = health_market({"DRAGONFLY_HEALTH_BASE_EJECTION_S": "600", "DRAGONFLY_HEALTH_MAX_EJECTION_S": "600"})
    contract = m.contract()["id"]
    reverify, unsuspend = (f"/v1/market/contracts/{contract}/{a}" for a in ("reverify", "unsuspend"))
    assert m.call("POST", reverify, m.cheap_owner).status_code == 409  # active: nothing to re-verify
    _degrade(m)

    # Reverify while the upstream still fails: the checks run, the contract stays degraded.
    r = m.call("POST", reverify, m.cheap_owner)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reverified"] is False and out["contract"]["status"] == "degraded"
    assert out["reason"] == "chat_completion: unexpected HTTP 503" and out["probe_run"]["passed"] is False
    m.cheap_seller.config.fail_status = None
    out = m.call("POST", reverify, m.cheap_owner).json()
    assert out["reverified"] is True and out["contract"]["status"] == "active" and out["reason"] is None
    for _ in range(20):
        if m.chat().first == m.cheap:
            break
    else:
        raise AssertionError("the re-verified listing never took a first attempt again")

    # It fails again, and only CHEAP is acceptable to these requests: 10 failures in a row suspend it.
    m.cheap_seller.config.fail_status = 503
    statuses: list[int] = []
    m.wait_for("suspended", 10.0, between=lambda: statuses.append(m.only_cheap().status))
    # 502 while it is tried; once the data plane has the suspension (it may before the API shows it),
    # no listing is left for these requests: 503.
    failed = statuses.count(502)
    assert statuses == [502] * failed + [503] * (len(statuses) - failed) and 10 <= failed <= 13, statuses
    (entry,) = [c for c in m.checks() if c["kind"] == "health:suspended"]
    assert "10 failed calls in a row (last: http_503)" in entry["detail"], entry["detail"]
    assert "ejection 1" in m.contract()["reason"]
    assert m.chat().first == m.pricey  # unroutable now
    assert m.call("POST", reverify, m.cheap_owner).status_code == 409

    # Another seller's contract is not found; unsuspend while failing changes nothing.
    assert m.call("POST", unsuspend, m.pricey_owner).status_code == 404
    out = m.call("POST", unsuspend, m.cheap_owner).json()
    assert out["unsuspended"] is False and out["contract"]["status"] == "suspended"
    m.cheap_seller.config.fail_status = None
    out = m.call("POST", unsuspend, m.cheap_owner).json()
    assert out["unsuspended"] is True and out["contract"]["status"] == "active"
    assert m.call("POST", unsuspend, m.cheap_owner).status_code == 409  # not suspended any more

    # An operator's suspension is the operator's to lift.
    ops = operator(m.origin)
    suspend = m.call("POST", f"/api/admin/listings/{m.cheap}/suspend", ops, {"reason": "abuse report"})
    assert suspend.status_code == 200, suspend.text
    refused = m.call("POST", unsuspend, m.cheap_owner)
    assert refused.status_code == 409 and "operator" in refused.json()["error"]["message"]
    assert m.call("POST", f"/api/admin/listings/{m.cheap}/unsuspend", ops).json()["unsuspended"] is True

    kinds = [(c["kind"], c["passed"]) for c in reversed(m.checks())]
    assert kinds == [
        ("health:degraded", False),
        ("health:reverify", False),
        ("health:reverify", True),
        ("health:degraded", False),
        ("health:suspended", False),
        ("health:unsuspend", False),
        ("health:unsuspend", True),
    ], kinds
    m.assert_books_clean()
