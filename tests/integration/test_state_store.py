"""One suite for every state store (in-memory and Redis): admission is all or nothing and atomic under
concurrency, settlement is exact and idempotent, re-seeding SETs, and Redis failures fail closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio
from support.redis_server import RedisServer

from dragonfly.domain.calendar import month_of
from dragonfly.gateway.eager import start_now
from dragonfly.storage.state.base import BaseStateStore
from dragonfly.storage.state.memory import MemoryStateStore
from dragonfly.storage.state.ports import (
    AccountSeed,
    AdmissionRequest,
    StateUnavailable,
    seed_now,
)
from dragonfly.storage.state.redis import RedisStateStore, _acct

NOW = 1_780_000_000_000
MONTH = month_of(NOW)


def req(rid: str, hold: int, **kw: object) -> AdmissionRequest:
    base: dict[str, object] = dict(
        request_id=rid,
        account_id="a1",
        key_id="k1",
        listing_id="l1",
        hold_micros=hold,
        key_budget_micros=None,
        listing_rpm_cap=None,
        listing_concurrency_cap=None,
        now_ms=NOW,
    )
    base.update(kw)
    return AdmissionRequest(**base)


async def seed(s: BaseStateStore, balance: int, spent: int = 0, account: str = "a1") -> None:
    await seed_now(s, AccountSeed(account, balance, MONTH, {"k1": spent}))


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BaseStateStore]:
    s: BaseStateStore
    if request.param == "memory":
        s = MemoryStateStore()
    else:
        s = RedisStateStore(request.getfixturevalue("fresh_redis_url"))
    yield s
    await s.close()


async def test_hold_never_exceeds_available_balance(store: BaseStateStore) -> None:
    await seed(store, 1000)
    assert (await store.admit(req("r1", 600))).ok
    refused = await store.admit(req("r2", 500))
    assert not refused.ok and refused.refusal == "insufficient_balance"
    assert await store.held_micros("a1") == 600
    await store.settle("r1", 250)  # actual cost below the hold frees the rest
    assert await store.held_micros("a1") == 0
    assert (await store.admit(req("r3", 750))).ok
    assert not (await store.admit(req("r4", 1))).ok


async def test_settle_is_idempotent_and_void_costs_nothing(store: BaseStateStore) -> None:
    await seed(store, 100)
    assert (await store.admit(req("r1", 100))).ok
    await store.settle("r1", 0)
    await store.settle("r1", 0)
    assert (await store.admit(req("r2", 60))).ok
    await store.settle("r2", 60)
    await store.settle("r2", 60)  # a replayed settlement charges once
    view = await store.account_view("a1")
    assert view is not None and view.available_micros == 40
    assert (await store.admit(req("r3", 40))).ok


async def test_voided_attempt_can_be_admitted_again_on_another_listing(store: BaseStateStore) -> None:
    await seed(store, 100)
    assert (await store.admit(req("r1", 100, listing_id="l1", listing_concurrency_cap=1))).ok
    await store.settle("r1", 0)  # the attempt failed: fall back
    assert (await store.admit(req("r1", 100, listing_id="l2", listing_concurrency_cap=1))).ok
    assert (await store.admit(req("r2", 0, listing_id="l1", listing_concurrency_cap=1))).ok
    await store.settle("r1", 70)
    view = await store.account_view("a1")
    assert view is not None and (view.held_micros, view.pending_micros) == (0, 70)


async def test_key_budget_counts_spend_and_holds(store: BaseStateStore) -> None:
    await seed(store, 10_000, spent=700)
    assert (await store.admit(req("r1", 200, key_budget_micros=1000))).ok
    refused = await store.admit(req("r2", 200, key_budget_micros=1000))
    assert refused.refusal == "budget_exceeded"
    await store.settle("r1", 100)
    assert (await store.admit(req("r3", 200, key_budget_micros=1000))).ok
    assert (await store.admit(req("r4", 0, key_budget_micros=1000))).ok
    assert not (await store.admit(req("r5", 1, key_budget_micros=1000))).ok


async def test_new_month_starts_with_nothing_spent(store: BaseStateStore) -> None:
    await seed(store, 10_000, spent=1000)
    assert not (await store.admit(req("r1", 1, key_budget_micros=1000))).ok
    next_month = NOW + 40 * 24 * 3600 * 1000
    assert (await store.admit(req("r2", 1000, key_budget_micros=1000, now_ms=next_month))).ok


async def test_listing_rpm_and_concurrency_caps(store: BaseStateStore) -> None:
    await seed(store, 10_000)
    assert (await store.admit(req("r1", 1, listing_concurrency_cap=1))).ok
    busy = await store.admit(req("r2", 1, listing_concurrency_cap=1))
    assert busy.refusal == "listing_concurrency" and busy.retry_after_s >= 1
    await store.settle("r1", 1)
    assert (await store.admit(req("r2", 1, listing_rpm_cap=2))).ok
    await store.settle("r2", 1)
    limited = await store.admit(req("r3", 1, listing_rpm_cap=2, now_ms=NOW + 10_000))
    assert (
        limited.refusal == "listing_rpm" and limited.retry_after_s == 50
    )  # NOW's second leaves at NOW + 60 s
    later = await store.admit(req("r4", 1, listing_rpm_cap=2, now_ms=NOW + 60_001))
    assert later.ok


async def test_the_rpm_window_slides_second_by_second(store: BaseStateStore) -> None:
    """rpm counts the admissions of the last 60 whole seconds (the current one included)."""
    await seed(store, 10_000)
    for i, at in enumerate((0, 20_500, 40_999)):
        assert (await store.admit(req(f"r{i}", 0, listing_rpm_cap=3, now_ms=NOW + at))).ok
    full = await store.admit(req("x1", 0, listing_rpm_cap=3, now_ms=NOW + 59_999))
    assert full.refusal == "listing_rpm" and full.retry_after_s == 1
    assert (await store.admit(req("r3", 0, listing_rpm_cap=3, now_ms=NOW + 60_000))).ok  # NOW's second left
    full = await store.admit(req("x2", 0, listing_rpm_cap=3, now_ms=NOW + 60_001))
    assert full.refusal == "listing_rpm" and full.retry_after_s == 20  # second 20 leaves at 80 s
    assert (await store.admit(req("r4", 0, listing_rpm_cap=3, now_ms=NOW + 80_000))).ok
    # A cap set later counts what was admitted without one; a quiet minute empties the window.
    assert not (await store.admit(req("x3", 0, listing_rpm_cap=2, now_ms=NOW + 80_100))).ok
    assert (await store.admit(req("r5", 0, listing_rpm_cap=1, now_ms=NOW + 200_000))).ok


async def test_the_rpm_window_stays_small_at_any_rate(
    store: BaseStateStore, request: pytest.FixtureRequest
) -> None:
    """50 admissions a second for 70 s: the window holds a count per second, not a member per request,
    and counts exactly the last 60 seconds' 3,000."""
    await seed(store, 10_000)
    for i in range(3500):
        assert (await store.admit(req(f"r{i}", 0, now_ms=NOW + 20 * i))).ok
    at = NOW + 69_990
    full = await store.admit(req("x", 0, listing_rpm_cap=3000, now_ms=at))
    assert full.refusal == "listing_rpm" and full.retry_after_s == 1
    assert (await store.admit(req("y", 0, listing_rpm_cap=3001, now_ms=at))).ok
    if isinstance(store, MemoryStateStore):
        assert len(store._listings["l1"].window) == 60
    else:
        client = redis.asyncio.from_url(request.getfixturevalue("redis_url"))
        try:
            assert await client.hlen("df:{l:l1}:rpms") == 62  # 60 seconds, 'n' and 'lo'
            assert 0 < await client.pttl("df:{l:l1}:rpms") <= 61_000
        finally:
            await client.aclose()


async def test_refused_admission_reserves_nothing(store: BaseStateStore) -> None:
    await seed(store, 50)
    assert not (await store.admit(req("r1", 60, listing_concurrency_cap=1, listing_rpm_cap=1))).ok
    assert await store.held_micros("a1") == 0
    assert (await store.admit(req("r2", 50, listing_concurrency_cap=1, listing_rpm_cap=1))).ok


async def test_expired_lease_frees_the_slot_and_the_reseed_frees_the_money(store: BaseStateStore) -> None:
    await seed(store, 100)
    assert (await store.admit(req("r1", 100, lease_ttl_ms=1000, listing_concurrency_cap=1))).ok
    assert not (await store.admit(req("r2", 100, now_ms=NOW + 500))).ok
    # The instance holding r1 died. Its concurrency slot comes back on the listing's next admission ...
    assert (await store.admit(req("r3", 0, now_ms=NOW + 2000, listing_concurrency_cap=1))).ok
    # ... but whether r1 was charged is for the database to say: until a re-seed the hold stays counted.
    assert await store.held_micros("a1") == 0
    assert not (await store.admit(req("r4", 1, now_ms=NOW + 2000))).ok
    await seed(store, 100)  # r1 never committed: the database still says 100
    assert (await store.admit(req("r5", 100, now_ms=NOW + 2000))).ok


async def test_late_settle_after_expiry_replaces_the_worst_case(store: BaseStateStore) -> None:
    await seed(store, 1000)
    assert (await store.admit(req("r1", 600, lease_ttl_ms=1000))).ok
    assert (await store.admit(req("r2", 0, now_ms=NOW + 2000))).ok  # sweeps r1
    view = await store.account_view("a1")
    assert view is not None and (view.held_micros, view.pending_micros) == (0, 600)
    await store.settle("r1", 150)
    view = await store.account_view("a1")
    assert view is not None and view.pending_micros == 150


async def test_zero_amounts_settle_sweep_and_reseed(store: BaseStateStore) -> None:
    """A free listing's hold is 0 and a failed trade costs 0. (The Redis scripts once sent Lua's -0 to
    HINCRBY, which refuses "-0": every zero settlement, expired zero hold and zero pending entry failed.)"""
    await seed(store, 1000)
    assert (await store.admit(req("free", 0))).ok
    await store.settle("free", 0)
    assert (await store.admit(req("lost", 0, lease_ttl_ms=1000))).ok  # its instance died
    assert (await store.admit(req("r1", 500, lease_ttl_ms=1000, now_ms=NOW + 2000))).ok  # sweeps "lost"
    assert (await store.admit(req("r2", 0, now_ms=NOW + 4000))).ok  # sweeps r1: 500 pending
    await store.settle("r1", 0)  # late, failed: the worst case becomes 0
    await seed(store, 1000)
    view = await store.account_view("a1")
    assert view is not None and (view.held_micros, view.pending_micros, view.available_micros) == (0, 0, 1000)


@pytest.mark.parametrize("seeded", [0, 5])
async def test_reseed_sets_never_adds(store: BaseStateStore, seeded: int) -> None:
    await seed(store, seeded)
    await seed(store, seeded)
    assert (await store.admit(req("r1", seeded))).ok
    assert not (await store.admit(req("r2", 1))).ok


async def test_reseed_keeps_settlements_the_database_read_may_have_missed(store: BaseStateStore) -> None:
    await seed(store, 1000, spent=0)
    assert (await store.admit(req("r1", 300))).ok
    assert (await store.admit(req("r2", 300))).ok
    await store.settle("r1", 200)  # committed before the mark: the database read includes it
    mark = (await store.seed_marks(["a1"]))["a1"]
    await store.settle("r2", 100)  # settled while the database was being read: maybe not included
    await store.seed(AccountSeed("a1", 800, MONTH, {"k1": 200}), mark)
    view = await store.account_view("a1")
    assert view is not None
    assert (view.balance_micros, view.held_micros, view.pending_micros) == (800, 0, 100)
    assert view.available_micros == 700  # r2 counted once, r1 not twice
    await seed(store, 700, spent=300)  # the next re-seed sees r2 in the database
    view = await store.account_view("a1")
    assert view is not None and (view.available_micros, view.pending_micros) == (700, 0)
    assert (await store.admit(req("r3", 700, key_budget_micros=1000))).ok
    assert not (await store.admit(req("r4", 1, key_budget_micros=10_000))).ok


async def test_unseeded_account_is_loaded_on_first_touch_once(store: BaseStateStore) -> None:
    with pytest.raises(StateUnavailable):
        await store.admit(req("r0", 1))  # no loader: fail closed, never a default balance
    calls: list[str] = []

    async def loader(account_id: str) -> AccountSeed:
        calls.append(account_id)
        await asyncio.sleep(0.01)
        return AccountSeed(account_id, 500, MONTH, {"k1": 0})

    store.set_loader(loader)
    results = await asyncio.gather(*(store.admit(req(f"r{i}", 100)) for i in range(10)))
    assert sum(r.ok for r in results) == 5
    assert calls == ["a1"]
    with pytest.raises(StateUnavailable):
        await store.admit(req("r99", 1, key_id="unknown-key"))  # the loader does not know that key


async def test_concurrent_admissions_admit_exactly_what_fits(store: BaseStateStore) -> None:
    await seed(store, 37 * 1000)
    results = await asyncio.gather(*(store.admit(req(f"r{i}", 1000)) for i in range(200)))
    assert sum(r.ok for r in results) == 37
    assert {r.refusal for r in results if not r.ok} == {"insufficient_balance"}
    await seed(store, 10**9, spent=0)
    budget = 37_000 + 37 * 1000 + 500  # the 37 holds still in flight, and room for 37 more
    results = await asyncio.gather(
        *(store.admit(req(f"b{i}", 1000, key_budget_micros=budget)) for i in range(200))
    )
    assert sum(r.ok for r in results) == 37
    assert {r.refusal for r in results if not r.ok} == {"budget_exceeded"}


async def test_concurrency_cap_is_never_exceeded(store: BaseStateStore) -> None:
    await seed(store, 10**9)
    inflight = 0
    peak = 0
    served = 0

    async def worker(w: int) -> None:
        nonlocal inflight, peak, served
        for i in range(10):
            adm = await store.admit(req(f"w{w}-{i}", 10, listing_concurrency_cap=3))
            if not adm.ok:
                assert adm.refusal == "listing_concurrency"
                await asyncio.sleep(0)
                continue
            inflight += 1
            peak = max(peak, inflight)
            await asyncio.sleep(0.002)
            inflight -= 1
            served += 1
            await store.settle(f"w{w}-{i}", 5)

    await asyncio.gather(*(worker(w) for w in range(40)))
    assert peak == 3 and served >= 3


async def test_orphan_settle_counts_the_cost(store: BaseStateStore) -> None:
    """The hold vanished (Redis lost its data, or a re-seed dropped the expired entry): the committed
    cost is still counted until the next re-seed confirms it."""
    await seed(store, 1000)
    assert (await store.admit(req("r1", 500, lease_ttl_ms=1000))).ok
    assert (await store.admit(req("r2", 0, now_ms=NOW + 2000))).ok  # sweeps r1 into pending
    await seed(store, 1000)  # r1 had not committed when the database was read: dropped
    await store.settle("r1", 300)  # it commits after all
    view = await store.account_view("a1")
    assert view is not None and view.available_micros == 700


# -- Redis only: fail closed and recover -------------------------------------------------------------


@pytest.mark.redis
async def test_redis_down_fails_closed_and_recovers_without_a_new_store(
    fresh_redis_url: str, redis_server: RedisServer
) -> None:
    database = {"a1": 1000}

    async def loader(account_id: str) -> AccountSeed:
        return AccountSeed(account_id, database[account_id], MONTH, {"k1": 0})

    store = RedisStateStore(fresh_redis_url)
    store.set_loader(loader)
    try:
        assert (await store.admit(req("r1", 400))).ok
        redis_server.stop()
        with pytest.raises(StateUnavailable) as err:
            await store.admit(req("r2", 100))
        assert err.value.status == 503 and err.value.headers["retry-after"]
        with pytest.raises(StateUnavailable):
            await store.seed_marks(["a1"])
        await store.settle("r1", 300)  # committed to the database: kept, never raised
        database["a1"] = 700
        redis_server.start()  # back, and empty
        view = await store.account_view("a1")
        assert view is None
        # The queued settlement is replayed first (an orphan now); then the first touch re-seeds from the
        # database, whose read comes after that replay and so already holds it: counted once.
        assert (await store.admit(req("r3", 400))).ok
        view = await store.account_view("a1")
        assert view is not None and view.balance_micros == 700 and view.held_micros == 400
        await seed(store, 700)
        assert (await store.admit(req("r4", 300))).ok
        assert not (await store.admit(req("r5", 1))).ok
    finally:
        await store.close()


@pytest.mark.redis
async def test_store_created_while_redis_is_down_connects_when_it_returns(
    fresh_redis_url: str, redis_server: RedisServer
) -> None:
    redis_server.stop()
    store = RedisStateStore(fresh_redis_url)
    try:
        with pytest.raises(StateUnavailable):
            await store.admit(req("r1", 1))
        redis_server.start()
        await seed(store, 10)
        assert (await store.admit(req("r1", 10))).ok
    finally:
        await store.close()


@pytest.mark.redis
async def test_two_stores_share_one_redis(fresh_redis_url: str) -> None:
    a, b = RedisStateStore(fresh_redis_url), RedisStateStore(fresh_redis_url)
    try:
        await seed(a, 10 * 100)
        results = await asyncio.gather(
            *(s.admit(req(f"r{i}", 100, listing_concurrency_cap=6)) for i, s in enumerate([a, b] * 50))
        )
        assert sum(r.ok for r in results) == 6
        await asyncio.gather(*(s.settle(f"r{i}", 100) for i, s in enumerate([a, b] * 50)))
        view = await a.account_view("a1")
        assert view is not None and (view.held_micros, view.pending_micros) == (0, 600)
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_lease_nobody_settles_leaves_nothing_behind(fresh_redis_url: str) -> None:
    """An instance that dies mid-request never settles its lease; a listing deleted afterwards is never
    admitted again to sweep it. The lease set expires with its latest lease instead — and a shorter lease
    taken later does not shorten it."""
    store = RedisStateStore(fresh_redis_url)
    client = redis.asyncio.from_url(fresh_redis_url)
    try:
        await seed(store, 100)
        assert (await store.admit(req("long", 0, listing_id="l1", lease_ttl_ms=60_000))).ok
        assert (await store.admit(req("short", 0, listing_id="l1", lease_ttl_ms=100))).ok
        assert 59_000 < await client.pttl("df:{l:l1}:lease") <= 61_000
        assert (await store.admit(req("dying", 0, listing_id="l2", lease_ttl_ms=100))).ok
        assert 0 < await client.pttl("df:{l:l2}:lease") <= 1_100
        await asyncio.sleep(1.3)
        assert await client.exists("df:{l:l2}:lease") == 0
        assert await client.zcard("df:{l:l1}:lease") == 2  # still there: its latest lease has not expired
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.redis
async def test_a_release_started_now_is_in_redis_before_the_caller_awaits(fresh_redis_url: str) -> None:
    """The gateway hands a trade's hold release to the store with `start_now` before it sends the answer
    and waits for Redis's reply only after (gateway/chat.py `_settle`): the script call must be on the
    wire when `start_now` returns. The event loop does not run while this test reads Redis with a
    blocking client, so the release can only be there if the first step wrote it."""
    store = RedisStateStore(fresh_redis_url)
    reader = redis.Redis.from_url(fresh_redis_url)
    try:
        await seed(store, 1000)
        assert (await store.admit(req("r1", 600))).ok
        assert reader.hget(_acct("a1"), "held") == b"600"
        release = start_now(store.settle("r1", 250))
        deadline = time.monotonic() + 5
        while reader.hget(_acct("a1"), "held") != b"0" and time.monotonic() < deadline:
            time.sleep(0.005)  # noqa: ASYNC251 - blocking on purpose: the loop must not run
        assert reader.hget(_acct("a1"), "held") == b"0"
        await release
        view = await store.account_view("a1")
        assert view is not None and view.held_micros == 0 and view.available_micros == 750
    finally:
        reader.close()
        await store.close()
