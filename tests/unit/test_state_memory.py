"""The in-memory state store: admission is all-or-nothing and settlement is exact."""

from __future__ import annotations

import pytest

from dragonfly.storage.state.memory import MemoryStateStore, month_of
from dragonfly.storage.state.ports import AccountSeed, AdmissionRequest, StateUnavailable, seed_now

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
