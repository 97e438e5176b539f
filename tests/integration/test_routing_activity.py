"""The data plane's routing-activity recorder against a real native Market and a real database (both
backends): sampling, explanations that reproduce the request's ranking, background batches, the bound on
the table, and that nothing it meets raises into the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from dragonfly.gateway.activity import RoutingActivity
from dragonfly.native.market import Market
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database

MODEL = "acme/chat-1"


def _market() -> Market:
    m = Market()
    # listing, seller, input price, output price, status, contract status
    for lid, seller, inp, out, status, contract in (
        ("cheap", "s1", 100_000, 200_000, "active", "active"),
        ("dear", "s2", 900_000, 1_800_000, "active", "active"),
        ("held", "s3", 50_000, 100_000, "suspended", "suspended"),
    ):
        m.upsert_listing(lid, MODEL, "custom", seller, inp, out, None, None, status, contract)
    m.set_profile("p-balanced", strategy="balanced")
    m.set_profile("p-cheap", strategy="cost_first", max_output_price=1_000_000)
    return m


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    handle = await open_database(database_url)
    try:
        yield handle
    finally:
        await handle.close()


async def _rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetch_all("SELECT * FROM routing_decisions ORDER BY id")


def _record(activity: RoutingActivity, **kw: Any) -> None:
    args: dict[str, Any] = {
        "model": MODEL,
        "profile_id": "p-balanced",
        "strategy": "balanced",
        "now_ms": 1_700_000_000_000,
        "seed": 42,
        "chosen_listing_id": "cheap",
        "outcome": "completed",
        "error_code": None,
    }
    activity.record(**{**args, **kw})


async def test_samples_one_decision_per_model_and_profile_per_second(db: Database) -> None:
    market, clock = _market(), Clock()
    activity = RoutingActivity(market, lambda: db, clock=clock)
    _record(activity, trade_id="t1")  # the first one after start is always kept
    clock.t += 0.5
    _record(activity, trade_id="t2")  # same model and profile within the second: skipped
    _record(activity, profile_id="p-cheap", strategy="cost_first", trade_id="t3")
    clock.t += 0.6
    _record(activity, trade_id="t4", outcome="failed", error_code="upstream_error", chosen_listing_id=None)
    assert (activity.stats.sampled, activity.stats.skipped) == (3, 1)
    assert await _rows(db) == []  # nothing is written on the caller's path

    await activity.flush()
    rows = await _rows(db)
    assert [r["trade_id"] for r in rows] == ["t1", "t3", "t4"]
    assert activity.stats.written == 3
    last = rows[-1]
    assert (last["outcome"], last["error_code"], last["chosen_listing_id"]) == (
        "failed",
        "upstream_error",
        None,
    )
    assert last["instance"] == activity.instance and last["seed"] == 42


async def test_explanation_reproduces_the_ranking_the_request_was_given(db: Database) -> None:
    market = _market()
    activity = RoutingActivity(market, lambda: db)
    now, seed = 1_700_000_000_000, 7
    for profile in ("p-balanced", "p-cheap"):
        _record(activity, profile_id=profile, now_ms=now, seed=seed)
    await activity.flush()
    for row in await _rows(db):
        explanation = orjson.loads(row["explanation"])
        ranked = [c["listing_id"] for c in explanation["rows"] if c["rank"] is not None]
        assert ranked == market.rank(MODEL, row["profile_id"], now, seed)
        assert explanation["listings"] == 3
        assert explanation["weights"] and all(w >= 0 for w in explanation["weights"].values())
        excluded = {c["listing_id"]: c["excluded"] for c in explanation["rows"] if c["rank"] is None}
        if row["profile_id"] == "p-cheap":  # its price ceiling excludes the dear listing
            assert excluded == {"held": "status_suspended", "dear": "output_price_above_ceiling"}
        else:
            assert excluded == {"held": "status_suspended"}
        first = explanation["rows"][0]
        assert first["listing_id"] == "cheap" and set(first["features"]) == set(explanation["weights"])
        assert first["score"] > 0


async def test_background_writer_batches_and_close_writes_the_rest(db: Database) -> None:
    activity = RoutingActivity(_market(), lambda: db, interval_s=0.0, linger_s=0.01)
    activity.start()
    try:
        _record(activity, trade_id="a")
        for _ in range(100):
            if await _rows(db):
                break
            await asyncio.sleep(0.02)
        assert [r["trade_id"] for r in await _rows(db)] == ["a"]
        for i in range(5):
            _record(activity, trade_id=f"b{i}")
    finally:
        await activity.close()
    assert [r["trade_id"] for r in await _rows(db)] == ["a", "b0", "b1", "b2", "b3", "b4"]


async def test_the_table_keeps_only_the_newest_rows(db: Database) -> None:
    activity = RoutingActivity(_market(), lambda: db, interval_s=0.0, batch=4, keep=5)
    for i in range(13):
        _record(activity, trade_id=f"t{i:02}")
    await activity.flush()
    assert [r["trade_id"] for r in await _rows(db)] == [f"t{i:02}" for i in range(8, 13)]


async def test_nothing_raises_into_the_caller(db: Database, database_url: str) -> None:
    market = _market()
    handle: list[Database | None] = [None]
    activity = RoutingActivity(market, lambda: handle[0], interval_s=0.0, queue=3)
    # A profile that left the market: recorded without candidates, the error named.
    _record(activity, profile_id="gone", trade_id="gone")
    # Garbage from a caller: counted, not raised.
    _record(activity, outcome=None)  # type: ignore[arg-type]
    assert activity.stats.failed == 1
    # No database yet (the runtime opens it at start): queued, the oldest dropped past the bound.
    for i in range(4):
        _record(activity, trade_id=f"q{i}")
    assert activity.stats.dropped == 2
    await activity.flush()
    handle[0] = db
    await activity.flush()
    rows = await _rows(db)
    assert [r["trade_id"] for r in rows] == ["q1", "q2", "q3"]

    _record(activity, profile_id="gone", trade_id="gone")
    await activity.flush()
    gone = (await _rows(db))[-1]
    assert orjson.loads(gone["explanation"]) == {
        "weights": {},
        "listings": 0,
        "rows": [],
        "error": "MarketError",
    }

    # A database that fails the write: the batch is dropped and counted.
    broken = await open_database(database_url)
    await broken.close()
    handle[0] = broken
    _record(activity, trade_id="lost")
    failed = activity.stats.failed
    await activity.flush()
    assert activity.stats.failed == failed + 1


def _explain_counter(market: Market) -> tuple[Market, Callable[[], int]]:
    """The market with `explain` counted (the recorder may call it only for sampled decisions)."""
    calls = [0]

    class Counting:
        def explain(self, *args: Any) -> list[dict[str, object]]:
            calls[0] += 1
            return market.explain(*args)

    return Counting(), lambda: calls[0]  # type: ignore[return-value]


async def test_explain_runs_only_for_sampled_decisions(db: Database) -> None:
    market, calls = _explain_counter(_market())
    clock = Clock()
    activity = RoutingActivity(market, lambda: db, clock=clock)
    for _ in range(1000):
        _record(activity)
        clock.t += 0.01  # 1000 decisions over 10 s
    assert calls() == activity.stats.sampled == 10
    assert activity.stats.skipped == 990
