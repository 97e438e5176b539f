"""Redis state store for several data-plane instances: one Lua script per admission and one per
settlement (`lua/*.lua`, loaded with EVALSHA), mirroring `MemoryStateStore` rule for rule.

Keys (hash-tagged per account so an account's state shares one slot):
  df:{a:ID}              hash   bal (database balance as last seeded), held, pend, seq
  df:{a:ID}:k:KEY        hash   m (month), spent (database month spend as last seeded), held, pend
  df:{a:ID}:holds        hash   request id -> "key\\tlisting\\tamount"
  df:{a:ID}:hexp         zset   request id by lease expiry (swept by the account's next admission)
  df:{a:ID}:pend         hash   request id -> "seq\\tcost\\tkey\\texpired" (see ports.py)
  df:{l:ID}:rpms         hash   admissions of the last minute per second (second -> count, n, lo)
  df:{l:ID}:lease        zset   concurrency leases by expiry (swept by the listing's next admission; the key
                                expires with its latest lease)

The admission script touches an account and a listing, so it needs one Redis primary (or Sentinel),
not Redis Cluster.

Fail closed: every connection or timeout error of `admit` (and of the seeding calls) raises
`StateUnavailable` (503); there is no local fallback for money. The client (`resp.RespClient`, one
pipelined connection; see there why not redis-py) connects lazily with a short connect timeout, so a
store created while Redis was down starts working once it is back. A settlement that cannot reach Redis
is kept in process and replayed (idempotently) on the next call.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from importlib import resources
from typing import Any

from dragonfly.domain.calendar import month_of
from dragonfly.storage.state.base import UNSEEDED, BaseStateStore, Ref
from dragonfly.storage.state.ports import (
    SWEEP_MAX,
    AccountSeed,
    AccountView,
    Admission,
    AdmissionRequest,
    Refusal,
    StateUnavailable,
)
from dragonfly.storage.state.resp import RespClient, RespUnavailable, Script

log = logging.getLogger("dragonfly.state.redis")

UNAVAILABLE: tuple[type[BaseException], ...] = (RespUnavailable, OSError, TimeoutError)
# Settlements kept while Redis is unreachable; beyond this the oldest are dropped (their leases expire).
MAX_QUEUED_SETTLES = 100_000
SEED_BATCH = 500  # seed scripts per pipeline round trip


def _lua(name: str) -> str:
    return (resources.files("dragonfly.storage.state") / "lua" / name).read_text(encoding="utf-8")


def _money_lua(name: str) -> str:
    """A money script with the helpers it shares (`lua/money.lua`: `decrement`) in front of it."""
    return _lua("money.lua") + _lua(name)


def _acct(account_id: str) -> str:
    return f"df:{{a:{account_id}}}"


def _key_prefix(account_id: str) -> str:
    return f"{_acct(account_id)}:k:"


def _listing(listing_id: str) -> str:
    return f"df:{{l:{listing_id}}}"


def _seed_args(seed: AccountSeed, mark: int) -> list[Any]:
    args: list[Any] = [mark, seed.balance_micros, seed.month, _key_prefix(seed.account_id)]
    for key_id, spent in seed.key_spend.items():
        args += [key_id, spent]
    return args


class RedisStateStore(BaseStateStore):
    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 0.25,
        op_timeout_s: float = 1.0,
    ) -> None:
        super().__init__()
        # Fail fast, no retries: the caller answers 503 and the client retries.
        self._redis = RespClient(url, connect_timeout_s=connect_timeout_s, op_timeout_s=op_timeout_s)
        self._admit = Script(self._redis, _money_lua("admit.lua"))
        self._settle = Script(self._redis, _money_lua("settle.lua"))
        self._seed = Script(self._redis, _money_lua("seed.lua"))
        self._queued: deque[tuple[str, Ref, int]] = deque()
        self._warned = False

    async def _admit_once(self, req: AdmissionRequest) -> Admission:
        if self._queued:
            await self._flush()
        a, lst = _acct(req.account_id), _listing(req.listing_id)
        keys = [a, f"{a}:k:{req.key_id}", f"{a}:holds", f"{a}:hexp", f"{a}:pend"]
        keys += [f"{lst}:rpms", f"{lst}:lease"]
        args: list[Any] = [
            req.request_id,
            req.key_id,
            req.listing_id,
            req.hold_micros,
            -1 if req.key_budget_micros is None else req.key_budget_micros,
            -1 if req.listing_rpm_cap is None else req.listing_rpm_cap,
            -1 if req.listing_concurrency_cap is None else req.listing_concurrency_cap,
            req.now_ms,
            req.now_ms + req.lease_ttl_ms,
            month_of(req.now_ms),
            SWEEP_MAX,
            _key_prefix(req.account_id),
        ]
        ref = Ref(req.account_id, req.key_id, req.listing_id)
        try:
            res = await self._admit(keys=keys, args=args)
        except UNAVAILABLE as exc:
            # The script may have run and only the reply been lost: void it once Redis answers again.
            self._enqueue(req.request_id, ref, 0)
            raise self._unavailable(exc) from None
        if res[0] == 2:
            return UNSEEDED
        if res[0] == 1:
            self._refs[req.request_id] = ref
            return Admission(True)
        refusal: Refusal = res[1].decode()
        return Admission(False, refusal, retry_after_s=int(res[2]))

    async def settle(self, request_id: str, cost_micros: int) -> None:
        ref = self._refs.pop(request_id, None)
        if ref is None:
            return  # not admitted here, or settled already
        self._enqueue(request_id, ref, cost_micros)
        await self._flush()

    async def seed_marks(self, account_ids: Sequence[str]) -> dict[str, int]:
        if not account_ids:
            return {}
        try:
            raw = await self._redis.execute_many([["HGET", _acct(a), "seq"] for a in account_ids])
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        return {a: int(v or 0) for a, v in zip(account_ids, raw, strict=True)}

    async def seed(self, seed: AccountSeed, mark: int) -> None:
        await self.seed_many([(seed, mark)])

    async def seed_many(self, seeds: Sequence[tuple[AccountSeed, int]]) -> None:
        try:
            for start in range(0, len(seeds), SEED_BATCH):
                calls = []
                for seed, mark in seeds[start : start + SEED_BATCH]:
                    a = _acct(seed.account_id)
                    calls.append(([a, f"{a}:pend"], _seed_args(seed, mark)))
                await self._seed.many(calls)
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from None

    async def account_view(self, account_id: str) -> AccountView | None:
        try:
            bal, held, pend = await self._redis.execute("HMGET", _acct(account_id), "bal", "held", "pend")
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        if bal is None:
            return None
        return AccountView(int(bal), int(held or 0), int(pend or 0))

    async def held_micros(self, account_id: str) -> int:
        view = await self.account_view(account_id)
        return view.held_micros if view else 0

    async def close(self) -> None:
        await self._flush()
        if self._queued:
            log.warning("%d settlements not applied to Redis; their leases will expire", len(self._queued))
        await self._redis.close()

    def _enqueue(self, request_id: str, ref: Ref, cost: int) -> None:
        if len(self._queued) >= MAX_QUEUED_SETTLES:
            self._queued.popleft()
        self._queued.append((request_id, ref, cost))

    async def _flush(self) -> None:
        """Apply queued settlements; stop at the first that cannot reach Redis (it stays queued).
        Concurrent flushes take different items; replaying one twice would be harmless anyway."""
        while self._queued:
            rid, ref, cost = self._queued.popleft()
            a = _acct(ref.account_id)
            keys = [a, f"{a}:k:{ref.key_id}", f"{a}:holds", f"{a}:hexp", f"{a}:pend"]
            keys.append(f"{_listing(ref.listing_id)}:lease")
            try:
                await self._settle(keys=keys, args=[rid, cost, ref.key_id])
            except UNAVAILABLE as exc:
                self._queued.appendleft((rid, ref, cost))
                if not self._warned:
                    log.warning("state store unreachable, settlement queued: %s", type(exc).__name__)
                    self._warned = True
                return
            self._warned = False

    def _unavailable(self, exc: BaseException) -> StateUnavailable:
        if not self._warned:
            log.warning("state store unreachable: %s", type(exc).__name__)
            self._warned = True
        return StateUnavailable()
