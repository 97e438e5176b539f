"""The in-memory state store: admission is all-or-nothing and settlement is exact."""

from __future__ import annotations

import pytest

from dragonfly.storage.state.memory import COMPACT_SLACK, MemoryStateStore, month_of
from dragonfly.storage.state.ports import (
    SWEEP_MAX,
    AccountSeed,
    AdmissionRequest,
    StateUnavailable,
    seed_now,
)

NOW = 1_780_000_000_000


async def seed(s: MemoryStateStore, balance: int, spent: int = 0) -> None:
    await seed_now(s, AccountSeed("a1", balance, month_of(NOW), {"k1": spent}))


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


async def test_hold_never_exceeds_available_balance() -> None:
    s = MemoryStateStore()
    await seed(s, 1000)
    assert (await s.admit(req("r1", 600))).ok
    refused = await s.admit(req("r2", 500))
    assert not refused.ok and refused.refusal == "insufficient_balance"
    assert await s.held_micros("a1") == 600
    await s.settle("r1", 250)  # actual cost below the hold frees the rest
    assert await s.held_micros("a1") == 0
    assert (await s.admit(req("r3", 750))).ok
    assert not (await s.admit(req("r4", 1))).ok


async def test_settle_is_idempotent_and_void_costs_nothing() -> None:
    s = MemoryStateStore()
    await seed(s, 100)
    assert (await s.admit(req("r1", 100))).ok
    await s.settle("r1", 0)
    await s.settle("r1", 0)
    assert (await s.admit(req("r2", 100))).ok


async def test_key_budget_counts_spend_and_holds() -> None:
    s = MemoryStateStore()
    await seed(s, 10_000, spent=700)
    assert (await s.admit(req("r1", 200, key_budget_micros=1000))).ok
    refused = await s.admit(req("r2", 200, key_budget_micros=1000))
    assert refused.refusal == "budget_exceeded"
    await s.settle("r1", 100)
    assert (await s.admit(req("r3", 200, key_budget_micros=1000))).ok


async def test_listing_rpm_and_concurrency_caps() -> None:
    s = MemoryStateStore()
    await seed(s, 10_000)
    assert (await s.admit(req("r1", 1, listing_concurrency_cap=1))).ok
    busy = await s.admit(req("r2", 1, listing_concurrency_cap=1))
    assert busy.refusal == "listing_concurrency" and busy.retry_after_s >= 1
    await s.settle("r1", 1)
    assert (await s.admit(req("r2", 1, listing_rpm_cap=2))).ok
    await s.settle("r2", 1)
    limited = await s.admit(req("r3", 1, listing_rpm_cap=2))
    assert limited.refusal == "listing_rpm" and 1 <= limited.retry_after_s <= 61
    later = await s.admit(req("r4", 1, listing_rpm_cap=2, now_ms=NOW + 60_001))
    assert later.ok


async def test_refused_admission_reserves_nothing() -> None:
    s = MemoryStateStore()
    await seed(s, 50)
    assert not (await s.admit(req("r1", 60, listing_concurrency_cap=1))).ok
    assert await s.held_micros("a1") == 0
    assert (await s.admit(req("r2", 50, listing_concurrency_cap=1))).ok


async def test_expired_lease_is_released() -> None:
    s = MemoryStateStore()
    await seed(s, 100)
    assert (await s.admit(req("r1", 100, lease_ttl_ms=1000, listing_concurrency_cap=1))).ok
    assert not (await s.admit(req("r2", 100, now_ms=NOW + 500))).ok
    # The slot is free at once; the money stays counted until the database says what was charged.
    assert not (await s.admit(req("r3", 100, now_ms=NOW + 2000, listing_concurrency_cap=1))).ok
    assert (await s.admit(req("r3", 0, now_ms=NOW + 2000, listing_concurrency_cap=1))).ok
    await seed(s, 100)
    assert (await s.admit(req("r4", 100, now_ms=NOW + 2000))).ok


async def test_unseeded_account_fails_closed() -> None:
    with pytest.raises(StateUnavailable):
        await MemoryStateStore().admit(req("r1", 0))


@pytest.mark.parametrize("seeded", [0, 5])
async def test_reseed_sets_never_adds(seeded: int) -> None:
    s = MemoryStateStore()
    await seed(s, seeded)
    await seed(s, seeded)
    assert (await s.admit(req("r1", seeded))).ok
    assert not (await s.admit(req("r2", 1))).ok


# Expired holds and leases are found through heaps, not by scanning every open one: the heaps stay
# bounded while holds come and go, and expiry still releases exactly what expired.
TTL = 1_000


def leased(rid: str, now: int, cap: int | None = None) -> AdmissionRequest:
    return req(rid, 10, now_ms=now, lease_ttl_ms=TTL, listing_concurrency_cap=cap)


async def test_heaps_stay_bounded_while_holds_come_and_go() -> None:
    store = MemoryStateStore()
    await seed(store, 10**12)
    for i in range(5_000):
        assert (await store.admit(leased(f"r{i}", NOW + i // 100))).ok
        await store.settle(f"r{i}", 1)
    acct = store._accounts["a1"]
    lst = store._listings["l1"]
    assert not acct.holds and not lst.leases
    assert len(acct.hexp) <= COMPACT_SLACK + 1
    assert len(lst.lexp) <= COMPACT_SLACK + 1
    view = await store.account_view("a1")
    assert view is not None and view.held_micros == 0 and view.pending_micros == 5_000


async def test_expired_leases_release_concurrency_and_turn_holds_into_pending() -> None:
    store = MemoryStateStore()
    await seed(store, 10**12)
    # 200 open requests at a concurrency cap of 200, half of them settled (their heap entries go stale).
    for i in range(200):
        assert (await store.admit(leased(f"r{i}", NOW, 200))).ok
    for i in range(0, 200, 2):
        await store.settle(f"r{i}", 3)
    for i in range(200, 300):  # refill to the cap, with later leases
        assert (await store.admit(leased(f"r{i}", NOW + 10, 200))).ok
    refused = await store.admit(leased("over", NOW + 10, 200))
    assert not refused.ok and refused.refusal == "listing_concurrency"
    # The first 100 live leases (odd r0..r199) expire at NOW + TTL; the later ones are still open.
    after = NOW + TTL
    assert (await store.admit(leased("late", after, 200))).ok
    acct = store._accounts["a1"]
    assert len(store._listings["l1"].leases) == 101  # r200..r299 + late
    # Holds are swept SWEEP_MAX per admission, oldest first; the money moves from held to pending.
    assert len(acct.holds) == 100 + 100 - SWEEP_MAX + 1
    swept = 0
    while any(h.expires_ms <= after for h in acct.holds.values()):
        assert (await store.admit(leased(f"more{swept}", after))).ok
        swept += 1
    view = await store.account_view("a1")
    assert view is not None
    assert view.held_micros == 10 * (100 + 1 + swept)  # r200..r299, late, the extra ones
    assert view.pending_micros == 3 * 100 + 10 * 100  # settled costs + expired holds at their full amount
