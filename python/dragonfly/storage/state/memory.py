"""In-process state store for the embedded default (a single data-plane worker owns all counters).

Every method runs without an `await` between check and update, so on one event loop each call is
atomic. Balances and key spend are SET from the database (`seed_*`), then kept current by `settle`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dragonfly.storage.state.ports import Admission, AdmissionRequest

_MINUTE_MS = 60_000


def month_of(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m")


@dataclass(slots=True)
class _Hold:
    account_id: str
    key_id: str
    listing_id: str
    amount: int
    month: str
    expires_ms: int


@dataclass(slots=True)
class _Account:
    balance: int = 0  # settled balance (database value, minus settles applied since)
    held: int = 0


@dataclass(slots=True)
class _KeySpend:
    month: str = ""
    spent: int = 0
    held: int = 0


@dataclass(slots=True)
class _Listing:
    window: deque[int] = field(default_factory=deque)  # admission times in the last minute
    inflight: int = 0


class MemoryStateStore:
    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._keys: dict[str, _KeySpend] = {}
        self._listings: dict[str, _Listing] = {}
        self._holds: dict[str, _Hold] = {}
        self._next_sweep_ms = 0

    async def admit(self, req: AdmissionRequest) -> Admission:
        self._expire(req.now_ms)
        acct = self._accounts.setdefault(req.account_id, _Account())
        if acct.balance - acct.held < req.hold_micros:
            return Admission(False, "insufficient_balance")
        month = month_of(req.now_ms)
        key = self._keys.setdefault(req.key_id, _KeySpend(month=month))
        if key.month != month:  # a new month starts with nothing spent
            key.month, key.spent = month, 0
        if (
            req.key_budget_micros is not None
            and key.spent + key.held + req.hold_micros > req.key_budget_micros
        ):
            return Admission(False, "budget_exceeded")
        lst = self._listings.setdefault(req.listing_id, _Listing())
        while lst.window and lst.window[0] <= req.now_ms - _MINUTE_MS:
            lst.window.popleft()
        if req.listing_rpm_cap is not None and len(lst.window) >= req.listing_rpm_cap:
            retry = (lst.window[0] + _MINUTE_MS - req.now_ms) // 1000 + 1
            return Admission(False, "listing_rpm", retry_after_s=int(retry))
        if req.listing_concurrency_cap is not None and lst.inflight >= req.listing_concurrency_cap:
            return Admission(False, "listing_concurrency", retry_after_s=1)
        if req.request_id in self._holds:
            return Admission(True)  # the same request admitted twice holds once
        lst.window.append(req.now_ms)
        lst.inflight += 1
        acct.held += req.hold_micros
        key.held += req.hold_micros
        self._holds[req.request_id] = _Hold(
            req.account_id, req.key_id, req.listing_id, req.hold_micros, month, req.now_ms + req.lease_ttl_ms
        )
        return Admission(True)

    async def settle(self, request_id: str, cost_micros: int) -> None:
        hold = self._holds.pop(request_id, None)
        if hold is None:
            return
        self._release(hold)
        acct = self._accounts.setdefault(hold.account_id, _Account())
        acct.balance -= cost_micros
        key = self._keys.setdefault(hold.key_id, _KeySpend(month=hold.month))
        if key.month == hold.month:
            key.spent += cost_micros

    async def seed_account(self, account_id: str, balance_micros: int) -> None:
        self._accounts.setdefault(account_id, _Account()).balance = balance_micros

    async def seed_key_spend(self, key_id: str, month: str, spent_micros: int) -> None:
        key = self._keys.setdefault(key_id, _KeySpend(month=month))
        if key.month != month:
            key.month, key.held = month, 0
        key.spent = spent_micros

    async def held_micros(self, account_id: str) -> int:
        acct = self._accounts.get(account_id)
        return acct.held if acct else 0

    async def close(self) -> None:
        self._holds.clear()

    def _release(self, hold: _Hold) -> None:
        acct = self._accounts.get(hold.account_id)
        if acct:
            acct.held -= hold.amount
        key = self._keys.get(hold.key_id)
        if key and key.month == hold.month:
            key.held -= hold.amount
        lst = self._listings.get(hold.listing_id)
        if lst:
            lst.inflight -= 1

    def _expire(self, now_ms: int) -> None:
        # Leases expire so a request that never settles (a bug, a killed task) cannot hold forever.
        if now_ms < self._next_sweep_ms or not self._holds:
            return
        self._next_sweep_ms = now_ms + 1000
        stale = [rid for rid, h in self._holds.items() if h.expires_ms <= now_ms]
        for rid in stale:
            self._release(self._holds.pop(rid))
