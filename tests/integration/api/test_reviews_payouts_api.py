"""Trade reviews and payouts over HTTP, through the real control plane (a subprocess) on SQLite and on
PostgreSQL with Redis: the seller's review queue and earnings show what an open review holds; the
operator resolves reviews (uphold refunds the buyer, dismiss releases the seller's share; a second
resolution is 409) and marks payouts paid; the seller asks for payouts (400 above what is available);
scopes and tenants hold; and `dragonfly admin check-ledger` passes on the books the API leaves."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from control_plane_support import PASSWORD, SECRET, ControlPlane, assert_error, start_control_plane
from support.ledger_seed import INPUT_PRICE, OUTPUT_PRICE, Trade, make_trade, new_buyer_key, write_trades
from support.processes import ProcessGroup

from dragonfly.domain.money import cents_to_micros, usd
from dragonfly.ids import new_id, now_ms
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.storage.sql import open_database

HOUR_MS = 3_600_000
SELLER, BUYER = "seller@reviews.test", "buyer@reviews.test"
# Billed 1000 / 500 tokens, counted 400 / 200, at 1 and 2 µUSD a token.
EXCESS = 600 * 1 + 300 * 2


@dataclass
class Setup:
    api: ControlPlane
    env: dict[str, str]
    seller: str
    buyer: str
    honest: Trade
    upheld: Trade  # flagged, to be upheld
    dismissed: Trade  # flagged, to be dismissed
    seller_session: str
    buyer_session: str
    ops: str


def _flagged(t: Trade) -> Trade:
    row = dataclasses.replace(
        t.row,
        usage_audit="flagged",
        native_tokens_prompt=3000,
        native_tokens_completion=1500,
        counted_tokens_prompt=400,
        counted_tokens_completion=200,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
    )
    return Trade(row, t.cost, t.postings)


async def _seed(database_url: str) -> tuple[str, str, list[Trade]]:
    db = await open_database(database_url)
    try:
        seller = await create_account(db, email=SELLER, password=PASSWORD, verified=True, roles=[])
        buyer = await create_account(db, email=BUYER, password=PASSWORD, verified=True, roles=[])
        await credit_account(db, account_id=buyer, amount_micros=cents_to_micros(1000), note="seed")
        key = await new_buyer_key(db, buyer)
        now = now_ms()
        trades = [
            make_trade(buyer=buyer, seller=seller, key_id=key, at_ms=now - 3 * HOUR_MS),
            _flagged(make_trade(buyer=buyer, seller=seller, key_id=key, at_ms=now - 2 * HOUR_MS)),
            _flagged(make_trade(buyer=buyer, seller=seller, key_id=key, at_ms=now - 2 * HOUR_MS + 1)),
        ]
        await write_trades(db, trades)
        return seller, buyer, trades
    finally:
        await db.close()


@pytest.fixture
def setup(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path, processes: ProcessGroup
) -> Setup:
    """Trades seeded before the control plane starts, so its first release pass (at startup) sees them."""
    seller, buyer, (honest, upheld, dismissed) = asyncio.run(_seed(database_url))
    env = {"DRAGONFLY_SETTLEMENT_PERIOD_S": "0.5"}
    if database_url.startswith("postgresql"):
        env["DRAGONFLY_REDIS_URL"] = str(request.getfixturevalue("fresh_redis_url"))
    api = start_control_plane(processes, database_url, tmp_path / "data", extra_env=env)
    return Setup(
        api=api,
        env={"DRAGONFLY_DATABASE_URL": database_url, "DRAGONFLY_DATA_DIR": str(tmp_path / "data"), **env},
        seller=seller,
        buyer=buyer,
        honest=honest,
        upheld=upheld,
        dismissed=dismissed,
        seller_session=api.login(SELLER),
        buyer_session=api.login(BUYER),
        ops=api.make_operator("ops@reviews.test"),
    )


def _micros(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


def _check_ledger(s: Setup) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", "admin", "check-ledger"],
        env={**os.environ, **s.env, "DRAGONFLY_SECRET_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_reviews_hold_then_uphold_and_dismiss(setup: Setup) -> None:
    s, api = setup, setup.api
    earnings = api.call("GET", "/v1/market/earnings", s.seller_session).json()
    # The startup pass released the honest trade only; both flagged trades' shares are held.
    held = s.upheld.row.seller_payout_micros + s.dismissed.row.seller_payout_micros
    assert earnings["available_usd"] == usd(s.honest.cost.payout)
    assert earnings["held_usd"] == usd(held) and earnings["locked_usd"] == usd(0)
    assert earnings["reserve_usd"] == usd(s.honest.cost.reserve)

    newest_first = sorted([s.dismissed.row.id, s.upheld.row.id], reverse=True)  # ids are the order
    queue = api.call("GET", "/v1/market/trade-reviews", s.seller_session, params={"state": "open"}).json()
    assert [r["trade_id"] for r in queue["data"]] == newest_first
    assert {r["review"]["state"] for r in queue["data"]} == {"open"}
    assert {r["review"]["excess_usd"] for r in queue["data"]} == {usd(EXCESS)}
    ops_queue = api.call("GET", "/api/admin/flagged-trades", s.ops, params={"state": "open"}).json()
    assert [t["id"] for t in ops_queue["data"]] == newest_first
    assert ops_queue["data"][0]["review"]["resolved_by"] is None
    assert_error(
        api.call("GET", "/v1/market/trade-reviews", s.seller_session, params={"state": "closed"}),
        400,
        "invalid_request",
    )

    path = f"/api/admin/flagged-trades/{s.upheld.row.id}/resolve"
    # Only an operator, only a known action, only a flagged trade.
    assert_error(
        api.call("POST", path, s.seller_session, json={"action": "uphold"}), 403, "permission_denied"
    )
    assert_error(api.call("POST", path, s.ops, json={"action": "refund"}), 400, "invalid_request")
    assert_error(api.call("POST", path, s.ops, json={"action": "uphold", "x": 1}), 400, "invalid_request")
    for other in (s.honest.row.id, new_id()):
        resp = api.call(
            "POST", f"/api/admin/flagged-trades/{other}/resolve", s.ops, json={"action": "dismiss"}
        )
        assert_error(resp, 404, "not_found")

    balance = _micros(api.call("GET", "/api/billing/balance", s.buyer_session).json()["balance_usd"])
    resp = api.call("POST", path, s.ops, json={"action": "uphold", "note": "reported 3x"})
    assert resp.status_code == 200, resp.text
    review = resp.json()["review"]
    assert (review["state"], review["refund_usd"], review["excess_usd"], review["note"]) == (
        "upheld",
        usd(EXCESS),
        usd(EXCESS),
        "reported 3x",
    )
    after = _micros(api.call("GET", "/api/billing/balance", s.buyer_session).json()["balance_usd"])
    assert after == balance + EXCESS
    lines = api.call("GET", "/api/billing/transactions", s.buyer_session).json()["data"]
    assert lines[0]["kind"] == "review_refund" and lines[0]["ref"] == s.upheld.row.id
    again = api.call("POST", path, s.ops, json={"action": "dismiss"})
    assert "already upheld" in assert_error(again, 409, "conflict")["message"]

    dismiss = f"/api/admin/flagged-trades/{s.dismissed.row.id}/resolve"
    assert (
        api.call("POST", dismiss, s.ops, json={"action": "dismiss"}).json()["review"]["state"] == "dismissed"
    )

    cost = s.upheld.cost
    p, r = cost.payout * EXCESS // cost.charge, cost.reserve * EXCESS // cost.charge
    earnings = api.call("GET", "/v1/market/earnings", s.seller_session).json()
    assert earnings["held_usd"] == usd(0) and earnings["locked_usd"] == usd(0)
    assert earnings["available_usd"] == usd(s.honest.cost.payout + cost.payout - p + s.dismissed.cost.payout)
    every = s.honest.row.seller_payout_micros + held
    assert earnings["lifetime_usd"] == usd(every - p - r)
    states = {
        r["trade_id"]: r["review"]["state"]
        for r in api.call("GET", "/v1/market/trade-reviews", s.seller_session).json()["data"]
    }
    assert states == {s.upheld.row.id: "upheld", s.dismissed.row.id: "dismissed"}
    # Another seller sees none of it.
    other = api.signup_verified("other@reviews.test")
    assert api.call("GET", "/v1/market/trade-reviews", other).json()["data"] == []
    _check_ledger(s)


def test_payouts_requested_listed_and_marked_paid(setup: Setup) -> None:
    s, api = setup, setup.api
    available = s.honest.cost.payout
    assert api.call("GET", "/v1/market/earnings", s.seller_session).json()["available_usd"] == usd(available)

    too_much = api.call(
        "POST", "/v1/market/payouts", s.seller_session, json={"amount_usd": usd(available + 1)}
    )
    err = assert_error(too_much, 400, "invalid_request")
    assert err["param"] == "amount_usd" and "above your available earnings" in err["message"]
    for bad in ({"amount_usd": "0"}, {"amount_usd": "1.0000001"}, {"amount_usd": True}, {}):
        assert_error(
            api.call("POST", "/v1/market/payouts", s.seller_session, json=bad), 400, "invalid_request"
        )

    made = api.call("POST", "/v1/market/payouts", s.seller_session, json={"amount_usd": usd(available - 10)})
    assert made.status_code == 201, made.text
    payout = made.json()
    assert (payout["status"], payout["amount_usd"], payout["paid_at"]) == (
        "pending",
        usd(available - 10),
        None,
    )
    view = api.call("GET", "/v1/market/earnings", s.seller_session).json()
    assert (view["available_usd"], view["payout_pending_usd"]) == (usd(10), usd(available - 10))
    mine = api.call("GET", "/v1/market/payouts", s.seller_session).json()
    assert [x["id"] for x in mine["data"]] == [payout["id"]] and mine["has_more"] is False

    # Scopes: a buyer-scope key cannot; the buyer account has no payouts; only an operator marks paid.
    key = api.call(
        "POST", "/api/management-keys", s.seller_session, json={"name": "b", "mgmt_scope": "buyer"}
    ).json()["key"]
    assert_error(api.call("GET", "/v1/market/payouts", key), 403, "permission_denied")
    assert api.call("GET", "/v1/market/payouts", s.buyer_session).json()["data"] == []
    mark = f"/api/admin/payouts/{payout['id']}/mark-paid"
    assert_error(api.call("POST", mark, s.seller_session, json={}), 403, "permission_denied")
    assert_error(
        api.call("POST", f"/api/admin/payouts/{new_id()}/mark-paid", s.ops, json={}), 404, "not_found"
    )

    queue = api.call("GET", "/api/admin/payouts", s.ops, params={"status": "pending"}).json()
    assert [(x["id"], x["seller_id"]) for x in queue["data"]] == [(payout["id"], s.seller)]
    paid = api.call("POST", mark, s.ops, json={"note": "wire 7"})
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["note"]) == ("paid", "wire 7")
    assert_error(api.call("POST", mark, s.ops, json={}), 409, "conflict")
    assert api.call("GET", "/api/admin/payouts", s.ops, params={"status": "pending"}).json()["data"] == []
    view = api.call("GET", "/v1/market/earnings", s.seller_session).json()
    assert (view["payout_pending_usd"], view["paid_out_usd"]) == (usd(0), usd(available - 10))
    _check_ledger(s)
