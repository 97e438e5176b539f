"""In-process state store for the embedded default (a single data-plane worker owns all counters).

Every method runs without an `await` between check and update, so on one event loop each call is
atomic. The data model and every rule mirror the Redis scripts (`lua/*.lua`) step by step, so the shared
test suite holds both to the same behaviour; see `ports` for the money model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush

from dragonfly.domain.calendar import month_of
from dragonfly.storage.state.base import UNSEEDED, BaseStateStore, Ref
from dragonfly.storage.state.ports import (
    RPM_WINDOW_S,
    SWEEP_MAX,
    AccountSeed,
    AccountView,
    Admission,
    AdmissionRequest,
    rpm_retry_after_s,
)

__all__ = ["MemoryStateStore", "month_of"]


@dataclass(slots=True)
class _Hold:
    key_id: str
    listing_id: str
    amount: int
    expires_ms: int


@dataclass(slots=True)
class _Pending:
    seq: int
    cost: int
    key_id: str
    expired: bool  # a hold whose lease ran out, counted at its full amount


@dataclass(slots=True)
class _Key:
    month: str
    spent: int = 0
    held: int = 0
    pending: int = 0


@dataclass(slots=True)
class _Account:
    balance: int | None = None  # None = never seeded
    held: int = 0
    pending: int = 0
    seq: int = 0
    holds: dict[str, _Hold] = field(default_factory=dict)
    hexp: list[tuple[int, str]] = field(default_factory=list)  # heap of (lease expiry, request id)
    pend: dict[str, _Pending] = field(default_factory=dict)
    keys: dict[str, _Key] = field(default_factory=dict)


@dataclass(slots=True)
class _Listing:
    # Admissions of the last minute counted per second, oldest first: [second, count], at most 60.
    window: deque[list[int]] = field(default_factory=deque)
    in_window: int = 0  # the counts' sum
    leases: dict[str, int] = field(default_factory=dict)  # request id -> lease expiry
    lexp: list[tuple[int, str]] = field(default_factory=list)  # heap of (lease expiry, request id)


# The expiry heaps play the part of the Redis scripts' sorted sets: an admission finds what expired in
# O(log n) instead of scanning every open hold (with 2,000 concurrent streams that scan made admission
# quadratic). Settled entries stay in a heap until they surface, or until it is rebuilt from the live
# dict once it holds more than twice as many entries (amortised O(1) per admission).
COMPACT_SLACK = 64


class MemoryStateStore(BaseStateStore):
    def __init__(self) -> None:
        super().__init__()
        self._accounts: dict[str, _Account] = {}
        self._listings: dict[str, _Listing] = {}

    async def _admit_once(self, req: AdmissionRequest) -> Admission:
        now = req.now_ms
        acct = self._accounts.setdefault(req.account_id, _Account())
        self._sweep(acct, now)
        key = acct.keys.get(req.key_id)
        if acct.balance is None or key is None:
            return UNSEEDED
        if acct.balance - acct.held - acct.pending < req.hold_micros:
            return Admission(False, "insufficient_balance")
        month = month_of(now)
        if key.month != month:  # a new month starts with nothing spent
            key.month, key.spent = month, 0
        budget = req.key_budget_micros
        if budget is not None and key.spent + key.held + key.pending + req.hold_micros > budget:
            return Admission(False, "budget_exceeded")
        lst = self._listings.setdefault(req.listing_id, _Listing())
        second, window = now // 1000, lst.window
        while window and window[0][0] <= second - RPM_WINDOW_S:
            lst.in_window -= window.popleft()[1]
        if req.listing_rpm_cap is not None and lst.in_window >= req.listing_rpm_cap:
            retry = rpm_retry_after_s(window[0][0], now) if window else RPM_WINDOW_S
            return Admission(False, "listing_rpm", retry_after_s=retry)
        lexp = lst.lexp
        while lexp and lexp[0][0] <= now:
            exp, rid = heappop(lexp)
            if lst.leases.get(rid) == exp:
                del lst.leases[rid]
        if req.listing_concurrency_cap is not None and len(lst.leases) >= req.listing_concurrency_cap:
            return Admission(False, "listing_concurrency", retry_after_s=1)
        if req.request_id in acct.holds:
            return Admission(True)  # the same request admitted twice holds once
        if window and window[-1][0] >= second:  # this second's count (or a clock that stepped back)
            window[-1][1] += 1
        else:
            window.append([second, 1])
        lst.in_window += 1
        acct.held += req.hold_micros
        key.held += req.hold_micros
        expires = now + req.lease_ttl_ms
        lst.leases[req.request_id] = expires
        heappush(lst.lexp, (expires, req.request_id))
        if len(lst.lexp) > 2 * len(lst.leases) + COMPACT_SLACK:
            lst.lexp = [(exp, rid) for rid, exp in lst.leases.items()]
            heapify(lst.lexp)
        acct.holds[req.request_id] = _Hold(req.key_id, req.listing_id, req.hold_micros, expires)
        heappush(acct.hexp, (expires, req.request_id))
        if len(acct.hexp) > 2 * len(acct.holds) + COMPACT_SLACK:
            acct.hexp = [(h.expires_ms, rid) for rid, h in acct.holds.items()]
            heapify(acct.hexp)
        self._refs[req.request_id] = Ref(req.account_id, req.key_id, req.listing_id)
        return Admission(True)

    async def settle(self, request_id: str, cost_micros: int) -> None:
        ref = self._refs.pop(request_id, None)
        if ref is None:
            return  # not admitted here, or settled already
        acct = self._accounts.setdefault(ref.account_id, _Account())
        lst = self._listings.get(ref.listing_id)
        if lst:
            lst.leases.pop(request_id, None)
        hold = acct.holds.pop(request_id, None)
        if hold is not None:
            acct.held -= hold.amount
            key = acct.keys.get(hold.key_id)
            if key:
                key.held -= hold.amount
            self._add_pending(acct, request_id, cost_micros, hold.key_id, expired=False)
            return
        entry = acct.pend.get(request_id)
        if entry is not None:
            if entry.expired:  # the lease ran out first: replace the worst case by the actual cost
                self._shift(acct, entry.key_id, cost_micros - entry.cost)
                entry.cost, entry.expired = cost_micros, False
            return
        # Orphan settle (the hold vanished: Redis lost its data, or a re-seed already dropped the expired
        # entry): count the cost until a re-seed confirms it. This can only over-count until then.
        self._add_pending(acct, request_id, cost_micros, ref.key_id, expired=False)

    async def seed_marks(self, account_ids: Sequence[str]) -> dict[str, int]:
        return {a: (self._accounts[a].seq if a in self._accounts else 0) for a in account_ids}

    async def seed(self, seed: AccountSeed, mark: int) -> None:
        acct = self._accounts.setdefault(seed.account_id, _Account())
        if acct.seq < mark:
            mark = 0  # the store was reset since the mark was read: drop nothing (over-count only)
        for rid in [r for r, p in acct.pend.items() if p.seq <= mark]:
            p = acct.pend.pop(rid)
            self._shift(acct, p.key_id, -p.cost)
        acct.balance = seed.balance_micros
        for key_id, spent in seed.key_spend.items():
            key = acct.keys.setdefault(key_id, _Key(month=seed.month))
            key.month, key.spent = seed.month, spent

    async def account_view(self, account_id: str) -> AccountView | None:
        acct = self._accounts.get(account_id)
        if acct is None or acct.balance is None:
            return None
        return AccountView(acct.balance, acct.held, acct.pending)

    async def held_micros(self, account_id: str) -> int:
        acct = self._accounts.get(account_id)
        return acct.held if acct else 0

    async def close(self) -> None:
        self._refs.clear()

    def _add_pending(self, acct: _Account, rid: str, cost: int, key_id: str, *, expired: bool) -> None:
        if cost <= 0:
            return
        acct.seq += 1
        acct.pend[rid] = _Pending(acct.seq, cost, key_id, expired)
        self._shift(acct, key_id, cost)

    @staticmethod
    def _shift(acct: _Account, key_id: str, delta: int) -> None:
        acct.pending += delta
        key = acct.keys.get(key_id)
        if key:
            key.pending += delta

    def _sweep(self, acct: _Account, now: int) -> None:
        # Leases expire so a request that never settles (a killed instance) cannot hold forever. The
        # money stays counted (pending, full hold) until the next re-seed says what was charged.
        heap, swept = acct.hexp, 0
        while heap and heap[0][0] <= now and swept < SWEEP_MAX:
            exp, rid = heappop(heap)
            hold = acct.holds.get(rid)
            if hold is None or hold.expires_ms != exp:
                continue  # settled already (or re-admitted with a later lease)
            del acct.holds[rid]
            swept += 1
            acct.held -= hold.amount
            key = acct.keys.get(hold.key_id)
            if key:
                key.held -= hold.amount
            self._add_pending(acct, rid, hold.amount, hold.key_id, expired=True)
