"""Seller earnings endpoints through the real control plane: the release worker started by the control
plane moves matured earnings at startup; balances, summaries, time series, months and the settlement
history are read back over HTTP; scopes and tenants are respected."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from control_plane_support import PASSWORD, ControlPlane, assert_error, start_control_plane, wait_until
from support.ledger_seed import Seeded, seed_market
from support.processes import ProcessGroup

from dragonfly.domain.money import usd
from dragonfly.ids import iso, now_ms
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database

HOUR_MS = 3_600_000
SELLER = "seller@example.com"


@dataclass
class Market:
    api: ControlPlane
    seeded: Seeded
    now: int
    session: str


async def _seed(database_url: str, now: int) -> Seeded:
    db = await open_database(database_url)
    try:
        seller = await create_account(db, email=SELLER, password=PASSWORD, verified=True, roles=[])
        return await seed_market(
            db, times_ms=[now - 3 * HOUR_MS, now - 2 * HOUR_MS, now - 60_000], seller=seller
        )
    finally:
        await db.close()


@pytest.fixture
def market(database_url: str, tmp_path: Path, processes: ProcessGroup) -> Market:
    """Trades seeded before the control plane starts, so its first release pass (at startup) sees them."""
    now = now_ms()
    seeded = asyncio.run(_seed(database_url, now))
    api = start_control_plane(processes, database_url, tmp_path / "data")
    return Market(api=api, seeded=seeded, now=now, session=api.login(SELLER))


def _released(m: Market) -> str | None:
    body = m.api.call("GET", "/v1/market/earnings", m.session).json()
    return body if body["available_usd"] != "0.000000" else None


def test_earnings_balances_and_settlement_history(market: Market) -> None:
    t = market.seeded.trades
    old, recent, charged = t[:2], t[2], t[:3]
    body = wait_until(lambda: _released(market))
    assert body == {
        "available_usd": usd(sum(x.cost.payout for x in old)),
        "locked_usd": usd(recent.cost.payout),
        "reserve_usd": usd(sum(x.cost.reserve for x in charged)),
        "held_usd": "0.000000",
        "payout_pending_usd": "0.000000",
        "paid_out_usd": "0.000000",
        "lifetime_usd": usd(sum(x.row.seller_payout_micros for x in charged)),
    }
    history = market.api.call("GET", "/v1/market/settlements", market.session).json()
    assert history["has_more"] is False and len(history["data"]) == 1
    row = history["data"][0]
    assert row["amount_usd"] == body["available_usd"] and row["trades_count"] == 2
    assert row["period_start"] == iso(old[0].row.created_at)
    assert row["period_end"] <= iso(market.now) and row["created_at"] >= row["period_end"]
    assert_error(
        market.api.call("GET", "/v1/market/settlements?limit=0", market.session), 400, "invalid_request"
    )
    # The journal and the settlement row agree in the database too.
    rows = market.api.query("SELECT amount_micros FROM seller_settlements")
    assert [int(r["amount_micros"]) for r in rows] == [sum(x.cost.payout for x in old)]


def test_summary_per_listing_and_model(market: Market) -> None:
    t = market.seeded.trades
    body = market.api.call("GET", "/v1/market/earnings/summary", market.session).json()
    by = {(r["listing_id"], r["model"]): r for r in body["data"]}
    assert set(by) == {("listing-a", "test/model-a"), ("listing-b", "test/model-b")}
    a = by[("listing-a", "test/model-a")]
    # listing a: trades 0 and 2, and the failed zero-cost trade
    assert a["requests"] == 3
    assert a["tokens"] == a["prompt_tokens"] + a["completion_tokens"] == 2 * 1500
    assert a["payout_usd"] == usd(t[0].row.seller_payout_micros + t[2].row.seller_payout_micros)
    assert by[("listing-b", "test/model-b")]["payout_usd"] == usd(t[1].row.seller_payout_micros)
    assert body["totals"]["requests"] == 4
    assert body["totals"]["payout_usd"] == usd(sum(x.row.seller_payout_micros for x in t))
    # A window that starts after the first trade leaves it (and the failed one) out.
    start = iso(market.now - 150 * 60_000)
    window = market.api.call(
        "GET", "/v1/market/earnings/summary", market.session, params={"from": start}
    ).json()
    assert window["totals"]["requests"] == 2 and window["from"] == start, window
    bad = market.api.call("GET", "/v1/market/earnings/summary?from=yesterday", market.session)
    assert_error(bad, 400, "invalid_request")


def test_timeseries_and_monthly(market: Market) -> None:
    total = usd(sum(x.row.seller_payout_micros for x in market.seeded.trades))
    params = {"bucket": "hour", "from": iso(market.now - 4 * HOUR_MS), "to": iso(market.now + 60_000)}
    hours = market.api.call("GET", "/v1/market/earnings/timeseries", market.session, params=params).json()
    assert hours["bucket"] == "hour" and len(hours["data"]) in (5, 6)  # one point per hour, zeros included
    nonzero = [p for p in hours["data"] if p["requests"]]
    assert len(nonzero) == 3
    assert usd(sum(_micros(p["payout_usd"]) for p in hours["data"])) == total
    assert [p["start"] for p in hours["data"]] == sorted(p["start"] for p in hours["data"])
    days = market.api.call("GET", "/v1/market/earnings/timeseries", market.session).json()
    assert days["bucket"] == "day" and 30 <= len(days["data"]) <= 31
    assert usd(sum(_micros(p["payout_usd"]) for p in days["data"])) == total
    bad = market.api.call("GET", "/v1/market/earnings/timeseries?bucket=week", market.session)
    assert_error(bad, 400, "invalid_request")
    too_long = {"bucket": "hour", "from": iso(market.now - 40 * 24 * HOUR_MS)}
    assert_error(
        market.api.call("GET", "/v1/market/earnings/timeseries", market.session, params=too_long),
        400,
        "invalid_request",
    )

    months = market.api.call("GET", "/v1/market/earnings/monthly", market.session).json()["data"]
    assert len(months) == 12 and months == sorted(months, key=lambda m: m["month"])
    assert usd(sum(_micros(m["payout_usd"]) for m in months)) == total
    assert sum(m["requests"] for m in months) == 4
    assert_error(
        market.api.call("GET", "/v1/market/earnings/monthly?months=0", market.session), 400, "invalid_request"
    )


def test_scopes_and_tenants(market: Market) -> None:
    api = market.api
    for scope, status in (("buyer", 403), ("seller", 200), ("full", 200)):
        made = api.call(
            "POST", "/api/management-keys", market.session, json={"name": scope, "mgmt_scope": scope}
        )
        assert made.status_code == 201, made.text
        resp = api.call("GET", "/v1/market/earnings", made.json()["key"])
        assert resp.status_code == status, (scope, resp.text)
        if status == 403:
            assert_error(resp, 403, "permission_denied")
    assert_error(api.call("GET", "/v1/market/settlements"), 401, "invalid_api_key")
    # Another seller sees none of this seller's money.
    other = api.signup_verified("other-seller@example.com")
    assert api.call("GET", "/v1/market/earnings", other).json() == {
        "available_usd": "0.000000",
        "locked_usd": "0.000000",
        "reserve_usd": "0.000000",
        "held_usd": "0.000000",
        "payout_pending_usd": "0.000000",
        "paid_out_usd": "0.000000",
        "lifetime_usd": "0.000000",
    }
    assert api.call("GET", "/v1/market/settlements", other).json()["data"] == []
    assert api.call("GET", "/v1/market/earnings/summary", other).json()["data"] == []


def _micros(amount_usd: str) -> int:
    whole, _, frac = amount_usd.partition(".")
    return int(whole) * 1_000_000 + int(frac.ljust(6, "0"))
