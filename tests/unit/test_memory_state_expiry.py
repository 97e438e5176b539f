"""The in-process state store finds expired leases through heaps, not by scanning every open hold: the
heaps must stay bounded while holds come and go, and expiry must still release exactly what expired."""

from __future__ import annotations

from dragonfly.domain.calendar import month_of
from dragonfly.storage.state.memory import COMPACT_SLACK, MemoryStateStore
from dragonfly.storage.state.ports import SWEEP_MAX, AccountSeed, AdmissionRequest

T0 = 1_800_000_000_000
TTL = 1_000


def _req(rid: str, now: int, hold: int = 10, cap: int | None = None) -> AdmissionRequest:
    return AdmissionRequest(
        request_id=rid,
        account_id="a1",
        key_id="k1",
        listing_id="l1",
        hold_micros=hold,
        key_budget_micros=None,
        listing_rpm_cap=None,
        listing_concurrency_cap=cap,
        now_ms=now,
        lease_ttl_ms=TTL,
    )


async def _store() -> MemoryStateStore:
    store = MemoryStateStore()
    await store.seed(AccountSeed("a1", 10**12, month_of(T0), {"k1": 0}), 0)
    return store


async def test_heaps_stay_bounded_while_holds_come_and_go() -> None:
    store = await _store()
    for i in range(5_000):
        assert (await store.admit(_req(f"r{i}", T0 + i // 100))).ok
        await store.settle(f"r{i}", 1)
    acct = store._accounts["a1"]
    lst = store._listings["l1"]
    assert not acct.holds and not lst.leases
    assert len(acct.hexp) <= COMPACT_SLACK + 1
    assert len(lst.lexp) <= COMPACT_SLACK + 1
    view = await store.account_view("a1")
    assert view is not None and view.held_micros == 0 and view.pending_micros == 5_000


async def test_expired_leases_release_concurrency_and_turn_holds_into_pending() -> None:
    store = await _store()
    # 200 open requests at a concurrency cap of 200, half of them settled (their heap entries go stale).
    for i in range(200):
        assert (await store.admit(_req(f"r{i}", T0, cap=200))).ok
    for i in range(0, 200, 2):
        await store.settle(f"r{i}", 3)
    for i in range(200, 300):  # refill to the cap, with later leases
        assert (await store.admit(_req(f"r{i}", T0 + 10, cap=200))).ok
    refused = await store.admit(_req("over", T0 + 10, cap=200))
    assert not refused.ok and refused.refusal == "listing_concurrency"
    # The first 100 live leases (odd r0..r199) expire at T0 + TTL; the later ones are still open.
    after = T0 + TTL
    assert (await store.admit(_req("late", after, cap=200))).ok
    acct = store._accounts["a1"]
    assert len(store._listings["l1"].leases) == 101  # r200..r299 + late
    # Holds are swept SWEEP_MAX per admission, oldest first; the money moves from held to pending.
    assert len(acct.holds) == 100 + 100 - SWEEP_MAX + 1
    swept = 0
    while any(h.expires_ms <= after for h in acct.holds.values()):
        assert (await store.admit(_req(f"more{swept}", after, cap=None))).ok
        swept += 1
    view = await store.account_view("a1")
    assert view is not None
    assert view.held_micros == 10 * (100 + 1 + swept)  # r200..r299, late, the extra ones
    assert view.pending_micros == 3 * 100 + 10 * 100  # settled costs + expired holds at their full amount
