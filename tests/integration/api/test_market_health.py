"""Market health read from the trades table, through the real control plane on both backends: per model
(`GET /v1/market/health`), per provider (`health` in `GET /v1/pool/providers`), per listing of the seller
(`health` in the listing views), and the seller's flagged trades (`GET /v1/market/trade-reviews`).

Listings are made with the product's services and set to the states under test; trades are written with
the repository the settlement writer uses. Every number asserted is worked out in the comments beside the
seeded trades."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from control_plane_support import PASSWORD, ControlPlane, assert_error, start_control_plane
from support.ledger_seed import make_trade
from support.market import market_settings
from support.processes import ProcessGroup

from dragonfly.domain.money import usd
from dragonfly.ids import iso, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.accounts import create_account
from dragonfly.services.listings import create_listing
from dragonfly.services.pool_keys import create_pool_key
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import trades as trades_repo
from dragonfly.storage.sql.repos.trades import TradeRow

MINUTE_MS = 60_000
SELLER_A, SELLER_B = "seller-a@example.com", "seller-b@example.com"
UPSTREAM = "http://127.0.0.1:9/v1"  # never called: no probe runs in these tests


def _attempt(listing_id: str, provider: str, status: str, error_type: str | None) -> dict[str, Any]:
    """One entry of a trade's `attempts`, as the gateway writes it (gateway/trade.py Attempt.as_dict)."""
    out: dict[str, Any] = {"listing_id": listing_id, "provider": provider, "status": status, "latency_ms": 5}
    return out | ({"error_type": error_type} if error_type else {})


def _uuid7(ms: int) -> str:
    """A UUIDv7 for `ms`, as trade ids are (time-ordered, so id order is arrival order)."""
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | ((r >> 68) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Seeded:
    now: int
    listings: dict[str, str]  # label -> listing id
    sellers: dict[str, str]  # "a" | "b" -> account id
    flagged: dict[str, list[TradeRow]]  # seller label -> their flagged trades, newest first


@dataclass
class Market:
    api: ControlPlane
    seeded: Seeded
    a: str  # seller A's session
    b: str  # seller B's session


async def _listing(
    db: Database,
    settings: Any,
    seller: str,
    *,
    provider: str,
    model: str,
    prices: tuple[str, str],
    status: str,
    contract_status: str,
    kind: str = "chat",
    price_unit: str | None = None,
) -> str:
    pool = await create_pool_key(
        db,
        settings,
        SecretBox(settings.secret_key),
        account_id=seller,
        provider=provider,
        base_url=UPSTREAM,
        api_key="upstream-key-0123456789",
    )
    listing = await create_listing(
        db,
        settings,
        account_id=seller,
        pool_key_id=pool["id"],
        model=model,
        input_price_per_mtok=prices[0],
        output_price_per_mtok=prices[1],
        kind=kind,
        price_unit=price_unit,
    )
    async with db.transaction() as tx:
        now = now_ms()
        await listings_repo.update(
            tx, listing["id"], {"status": status, "contract_status": contract_status}, now=now
        )
        contract = await contracts_repo.current_for_listing(tx, listing["id"])
        assert contract is not None
        await contracts_repo.set_status(
            tx, contract_id=contract["id"], status=contract_status, reason=None, now=now
        )
    return str(listing["id"])


async def _seed(database_url: str, data_dir: Path) -> Seeded:
    settings = market_settings(database_url, data_dir)
    now = now_ms()
    db = await open_database(database_url)
    try:
        a = await create_account(db, email=SELLER_A, password=PASSWORD, verified=True, roles=[])
        b = await create_account(db, email=SELLER_B, password=PASSWORD, verified=True, roles=[])
        buyer = await create_account(
            db, email="buyer@example.com", password=PASSWORD, verified=True, roles=[]
        )
        ids = {
            # acme/chat-1: a1 and a2 routable (a2 degraded still routes), b1 paused
            "a1": await _listing(
                db, settings, a, provider="deepseek", model="acme/chat-1", prices=("1", "2"),
                status="active", contract_status="active",
            ),
            "a2": await _listing(
                db, settings, a, provider="deepseek", model="acme/chat-1", prices=("0.5", "3"),
                status="active", contract_status="degraded",
            ),
            "b1": await _listing(
                db, settings, b, provider="groq", model="acme/chat-1", prices=("2", "4"),
                status="paused", contract_status="active",
            ),
            "b2": await _listing(
                db, settings, b, provider="custom", model="acme/embed-1", prices=("0.1", "0"),
                status="active", contract_status="active", kind="embeddings",
            ),
            "b3": await _listing(
                db, settings, b, provider="openai", model="acme/tts-1", prices=("15", "0"),
                status="pending", contract_status="pending", kind="speech", price_unit="character",
            ),
            "b4": await _listing(
                db, settings, b, provider="together", model="acme/chat-2", prices=("0.2", "0.8"),
                status="active", contract_status="active",
            ),
        }  # fmt: skip
        sellers = {"a1": a, "a2": a, "b1": b, "b2": b, "b3": b, "b4": b}
        providers = {"a1": "deepseek", "a2": "deepseek", "b1": "groq", "b2": "custom", "b4": "together"}
        models = {"a1": "acme/chat-1", "a2": "acme/chat-1", "b1": "acme/chat-1"}
        models |= {"b2": "acme/embed-1", "b4": "acme/chat-2"}
        rows: list[TradeRow] = []
        clock = [now - 30 * MINUTE_MS]

        def trade(
            label: str,
            status: str,
            ttft: int | None = None,
            *,
            at: int | None = None,
            flagged: bool = False,
            before: tuple[tuple[str, str, str], ...] = (),
            served: bool = True,
        ) -> TradeRow:
            """A trade of `label`'s model, settled on its listing unless not `served`; `before` are
            (listing label, status, error type) of the attempts before the one that served it."""
            if at is None:
                clock[0] += 1  # every trade its own millisecond, so id order is creation order
                at = clock[0]
            base = make_trade(
                buyer=buyer,
                seller=sellers[label],
                key_id="seeded-key",
                at_ms=at,
                listing_id=ids[label],
                model=models[label],
                status=status,
            )
            tried = [_attempt(ids[x], providers[x], st, err) for x, st, err in before]
            if served:
                tried.append(_attempt(ids[label], providers[label], "ok", None))
            row = dataclasses.replace(
                base.row,
                id=_uuid7(at),
                listing_id=ids[label] if served else None,
                seller_account_id=sellers[label] if served else None,
                provider=providers[label] if served else None,
                ttft_ms=ttft,
                native_tokens_completion=5000 if flagged else base.row.native_tokens_completion,
                usage_audit="flagged" if flagged else "ok",
                attempts=orjson.dumps(tried).decode(),
            )
            rows.append(row)
            return row

        # a1: in the hour 3 completed (TTFT 100, 200, 300; two of them flagged) and 1 failed; two hours
        # ago a completed one (TTFT 5, flagged) that only a 24 h window sees.
        old = trade("a1", "completed", 5, at=now - 120 * MINUTE_MS, flagged=True)
        flagged_100 = trade("a1", "completed", 100, flagged=True)
        flagged_200 = trade("a1", "completed", 200, flagged=True)
        trade("a1", "completed", 300)
        trade("a1", "failed")
        # a2: 2 completed (TTFT 400, and one without a TTFT), 1 continued; cancelled and refused ones
        # are left out of every figure.
        trade("a2", "completed", 400)
        trade("a2", "completed", None)
        trade("a2", "continued")  # its stream broke and another listing went on: a failure
        trade("a2", "cancelled", 40)
        trade("a2", "refused")
        # Failed attempts count against their listing whoever served the trade. a1 served one after a2
        # answered 503 (a2: 1 failure, a1: 1 success without a TTFT; a refusal at b1's cap is no call);
        # one failed everywhere: a1 timed out, a2 could not be reached, b1's 400 was the buyer's own
        # (a1: 1 failure, a2: 1 failure); and a hedge a2 lost, in a trade the buyer left, counts nowhere.
        trade("a1", "completed", None, before=(("a2", "error", "http_503"), ("b1", "refused", "listing_rpm")))
        failing = (
            ("a1", "timeout", "timeout"),
            ("a2", "connect_error", "connect_error"),
            ("b1", "error", "http_400"),
        )
        trade("a1", "failed", before=failing, served=False)
        trade("a1", "cancelled", 60, before=(("a2", "cancelled", "hedge_lost"),))
        # b1 (paused now): a minute ago 4 completed (TTFT 10, 20, 30, 41; one flagged) and 1 failed.
        b1_at = now - MINUTE_MS
        b1 = [
            trade("b1", "completed", t, at=b1_at + i, flagged=t == 30) for i, t in enumerate((10, 20, 30, 41))
        ]
        trade("b1", "failed", at=b1_at + 10)
        # b2 (embeddings, no TTFT): 19 completed and 1 failed = exactly 95 % of 20; 2 cancelled.
        for _ in range(19):
            trade("b2", "completed")
        trade("b2", "failed")
        trade("b2", "cancelled")
        trade("b2", "cancelled")
        # b4: 18 completed (TTFT 250) and 2 failed = 90 % of 20; 10 failed two hours ago.
        for _ in range(18):
            trade("b4", "completed", 250)
        trade("b4", "failed")
        trade("b4", "failed")
        for i in range(10):
            trade("b4", "failed", at=now - 120 * MINUTE_MS + 1 + i)
        # A trade refused before any seller (b4 at its cap): no listing, no seller, no call.
        trade(
            "b4", "failed", at=now - 10 * MINUTE_MS, before=(("b4", "refused", "listing_rpm"),), served=False
        )

        async with db.transaction() as tx:
            for row in rows:
                assert await trades_repo.insert(tx, row)
        return Seeded(
            now=now,
            listings=ids,
            sellers={"a": a, "b": b},
            flagged={"a": [flagged_200, flagged_100, old], "b": [b1[2]]},
        )
    finally:
        await db.close()


@pytest.fixture
def market(database_url: str, tmp_path: Path, processes: ProcessGroup) -> Market:
    seeded = asyncio.run(_seed(database_url, tmp_path / "seed"))
    api = start_control_plane(processes, database_url, tmp_path / "data")
    return Market(api=api, seeded=seeded, a=api.login(SELLER_A), b=api.login(SELLER_B))


def _health(m: Market, token: str, **params: Any) -> dict[str, Any]:
    resp = m.api.call("GET", "/v1/market/health", token, params=params)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _model(
    model: str,
    kind: str,
    active: int,
    prices: tuple[str, str, str, str] | None,
    median: float | None,
    rate: float | None,
    trades: int,
    window_s: int,
) -> dict[str, Any]:
    return {
        "model": model,
        "kind": kind,
        "active_listings": active,
        "price_range": None
        if prices is None
        else {
            "input_per_mtok": {"min": prices[0], "max": prices[1]},
            "output_per_mtok": {"min": prices[2], "max": prices[3]},
        },
        "median_ttft_ms": median,
        "success_rate": rate,
        "trades": trades,
        "window_s": window_s,
    }


def test_market_health_per_model_over_the_window(market: Market) -> None:
    # The last hour (default). acme/chat-1: a1 4 of 6, a2 2 of 5, b1 4 of 5 -> 10 of 16; TTFTs 10 20 30 41
    # 100 200 300 400 -> median (41 + 100) / 2. Prices from a1 and a2 only (b1 is paused).
    chat1 = ("0.5", "1", "2", "3")
    assert _health(market, market.a) == {
        "window_s": 3600,
        "data": [
            _model("acme/chat-1", "chat", 2, chat1, 70.5, 10 / 16, 16, 3600),
            _model("acme/chat-2", "chat", 1, ("0.2", "0.2", "0.8", "0.8"), 250, 0.9, 20, 3600),
            _model("acme/embed-1", "embeddings", 1, ("0.1", "0.1", "0", "0"), None, 0.95, 20, 3600),
            _model("acme/tts-1", "speech", 0, None, None, None, 0, 3600),
        ],
    }
    # A day: the two-hour-old trades count too. chat-1 gains a completed one (TTFT 5): 11 of 17, median
    # of 9 values = 41; chat-2 gains 10 failed: 18 of 30.
    day = _health(market, market.b, window_s="86400")["data"]
    assert day[0] == _model("acme/chat-1", "chat", 2, chat1, 41, 11 / 17, 17, 86400)
    assert day[1] == _model("acme/chat-2", "chat", 1, ("0.2", "0.2", "0.8", "0.8"), 250, 18 / 30, 30, 86400)
    # Ten minutes: only b1's trades of a minute ago. 4 of 5, median (20 + 30) / 2.
    ten = _health(market, market.a, window_s="600")
    assert ten["window_s"] == 600
    assert [(x["model"], x["trades"], x["success_rate"], x["median_ttft_ms"]) for x in ten["data"]] == [
        ("acme/chat-1", 5, 0.8, 25),
        ("acme/chat-2", 0, None, None),
        ("acme/embed-1", 0, None, None),
        ("acme/tts-1", 0, None, None),
    ]
    assert _health(market, market.a, window_s="60")["window_s"] == 60


@pytest.mark.parametrize("window", ["59", "86401", "0", "-60", "abc", "3600.5", "1e3"])
def test_a_window_out_of_range_is_refused(market: Market, window: str) -> None:
    resp = market.api.call("GET", "/v1/market/health", market.a, params={"window_s": window})
    assert assert_error(resp, 400, "invalid_request")["param"] == "window_s"


def test_provider_health_from_the_last_hour(market: Market) -> None:
    data = market.api.call("GET", "/v1/pool/providers", market.a).json()["data"]
    health = {p["id"]: p["health"] for p in data}
    assert health == {
        "deepseek": "degraded",  # a2's contract is degraded (whatever the traffic: 6 of 11 in the hour)
        "groq": "unknown",  # 5 trades: too few to judge
        "custom": "ok",  # 19 of 20 = 95 %
        "together": "degraded",  # 18 of 20 = 90 %
        "openai": "unknown",  # no trades
        "fireworks": "unknown",
        "mistral": "unknown",
        "openrouter": "unknown",
    }


def _listing_health(status: str, rate: float | None, trades: int, median: float | None) -> dict[str, Any]:
    return {
        "status": status,
        "success_rate": rate,
        "trades": trades,
        "median_ttft_ms": median,
        "window_s": 3600,
    }


def test_listing_views_carry_their_health(market: Market) -> None:
    ids, api = market.seeded.listings, market.api
    mine = {x["id"]: x["health"] for x in api.call("GET", "/v1/market/listings", market.a).json()["data"]}
    assert mine == {
        # 4 trades served, 2 failed (one a timeout in a trade no one served); TTFT 100 200 300
        ids["a1"]: _listing_health("unknown", 4 / 6, 6, 200),
        # 2 served, 3 failed (a continued stream, a 503 and a connect error); its contract is degraded
        ids["a2"]: _listing_health("degraded", 2 / 5, 5, 400),
    }
    one = api.call("GET", f"/v1/market/listings/{ids['a2']}", market.a).json()
    assert one["health"] == mine[ids["a2"]] and one["contract_status"] == "degraded"

    theirs = {x["id"]: x["health"] for x in api.call("GET", "/v1/market/listings", market.b).json()["data"]}
    assert theirs == {
        ids["b1"]: _listing_health("unknown", 0.8, 5, 25),
        ids["b2"]: _listing_health("ok", 0.95, 20, None),
        ids["b3"]: _listing_health("unknown", None, 0, None),
        ids["b4"]: _listing_health("degraded", 0.9, 20, 250),
    }
    # Another seller's listing is still not found.
    assert_error(market.api.call("GET", f"/v1/market/listings/{ids['a1']}", market.b), 404, "not_found")


def _review(row: TradeRow) -> dict[str, Any]:
    return {
        "trade_id": row.id,
        "created_at": iso(row.created_at),
        "model": row.model,
        "listing_id": row.listing_id,
        "tokens_prompt": row.tokens_prompt,
        "tokens_completion": row.tokens_completion,
        "tokens_cached": row.tokens_cached,
        "native_tokens_prompt": row.native_tokens_prompt,
        "native_tokens_completion": 5000,
        "counted_tokens_prompt": row.counted_tokens_prompt,
        "counted_tokens_completion": row.counted_tokens_completion,
        "cost_usd": usd(row.cost_micros),
        "seller_payout_usd": usd(row.seller_payout_micros),
        "flagged_by": "trade",  # its own report crossed the review threshold when it settled
        "market_audit": None,
        # Open: the seller's share is held. Billed as counted (the seller's 5000 was not billed): no excess.
        "review": {
            "state": "open",
            "held_usd": usd(row.seller_payout_micros),
            "excess_usd": "0.000000",
            "refund_usd": "0.000000",
            "note": None,
            "resolved_at": None,
        },
    }


def test_trade_reviews_list_the_sellers_own_flagged_trades(market: Market) -> None:
    api, flagged = market.api, market.seeded.flagged
    first = api.call("GET", "/v1/market/trade-reviews", market.a, params={"limit": 2}).json()
    assert first == {
        "data": [_review(flagged["a"][0]), _review(flagged["a"][1])],
        "has_more": True,
        "next_cursor": flagged["a"][1].id,
    }
    second = api.call(
        "GET", "/v1/market/trade-reviews", market.a, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert second == {"data": [_review(flagged["a"][2])], "has_more": False, "next_cursor": None}
    # Seller B sees only their own flagged trade, never A's.
    theirs = api.call("GET", "/v1/market/trade-reviews", market.b).json()
    assert theirs == {"data": [_review(flagged["b"][0])], "has_more": False, "next_cursor": None}
    assert api.call("GET", "/v1/market/trade-reviews", api.signup_verified("c@example.com")).json() == {
        "data": [],
        "has_more": False,
        "next_cursor": None,
    }
    for params in ({"cursor": "not-a-trade"}, {"limit": "0"}, {"limit": "101"}):
        assert_error(
            api.call("GET", "/v1/market/trade-reviews", market.a, params=params), 400, "invalid_request"
        )
    # The operator's list still holds every seller's flagged trades.
    ops = api.make_operator("ops@example.com")
    every = api.call("GET", "/api/admin/flagged-trades", ops).json()["data"]
    assert sorted(t["id"] for t in every) == sorted(t.id for t in flagged["a"] + flagged["b"])


def test_seller_scope_is_required(market: Market) -> None:
    api = market.api
    for scope, status in (("buyer", 403), ("seller", 200), ("full", 200)):
        made = api.call("POST", "/api/management-keys", market.a, json={"name": scope, "mgmt_scope": scope})
        assert made.status_code == 201, made.text
        for path in ("/v1/market/health", "/v1/market/trade-reviews"):
            resp = api.call("GET", path, made.json()["key"])
            if status == 403:
                assert_error(resp, 403, "permission_denied")
            else:
                assert resp.status_code == 200, (scope, path, resp.text)
    buyer_key = api.call("POST", "/api/keys", market.a, json={"name": "app"}).json()["key"]
    for path in ("/v1/market/health", "/v1/market/trade-reviews"):
        assert_error(api.call("GET", path), 401, "invalid_api_key")
        assert_error(api.call("GET", path, buyer_key), 401, "invalid_api_key")
