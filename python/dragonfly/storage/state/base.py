"""What every state store shares: admission with a first-touch seed of an account the store does not
know yet (a new account, or everything after Redis lost its data)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

from dragonfly.record import record
from dragonfly.storage.state.ports import (
    AccountSeed,
    AccountView,
    Admission,
    AdmissionRequest,
    SeedLoader,
    StateUnavailable,
)

log = logging.getLogger("dragonfly.state")


@record
class Ref:
    """Where the hold of a request admitted by this store instance lives (settle needs it)."""

    account_id: str
    key_id: str
    listing_id: str


# What `_admit_once` answers when the account or the key has no seeded value in the store.
UNSEEDED = Admission(False, None)


class BaseStateStore(ABC):
    def __init__(self) -> None:
        self._loader: SeedLoader | None = None
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._refs: dict[str, Ref] = {}  # request id -> its hold, until settled
        self._loads: dict[str, int] = {}  # account id -> first-touch seeds finished

    def set_loader(self, loader: SeedLoader | None) -> None:
        self._loader = loader

    async def admit(self, req: AdmissionRequest) -> Admission:
        loads = self._loads.get(req.account_id, 0)
        adm = await self._admit_once(req)
        if adm is not UNSEEDED:
            return adm
        await self._first_touch(req.account_id, loads)
        adm = await self._admit_once(req)
        if adm is UNSEEDED:
            raise StateUnavailable()
        return adm

    async def _first_touch(self, account_id: str, loads_before: int) -> None:
        """Seed one account from the database, once for all the admissions waiting on it."""
        if self._loader is None:
            raise StateUnavailable()
        if self._loads.get(account_id, 0) != loads_before:
            return  # a seed finished since this admission looked: just try again
        running = self._loading.get(account_id)
        if running is None:
            running = asyncio.ensure_future(self._load(self._loader, account_id))
            self._loading[account_id] = running
            running.add_done_callback(lambda _f: self._loading.pop(account_id, None))
        try:
            await asyncio.shield(running)
        except StateUnavailable:
            raise
        except Exception as exc:  # the database is down too: still fail closed
            log.warning("first-touch seed failed: %s", type(exc).__name__)
            raise StateUnavailable() from None

    async def _load(self, loader: SeedLoader, account_id: str) -> None:
        mark = (await self.seed_marks([account_id]))[account_id]
        await self.seed(await loader(account_id), mark)
        self._loads[account_id] = self._loads.get(account_id, 0) + 1

    @abstractmethod
    async def _admit_once(self, req: AdmissionRequest) -> Admission:
        """The atomic check-and-reserve; `UNSEEDED` (the object) when the account or key is unknown."""

    @abstractmethod
    async def seed_marks(self, account_ids: Sequence[str]) -> dict[str, int]: ...

    @abstractmethod
    async def seed(self, seed: AccountSeed, mark: int) -> None: ...

    async def seed_many(self, seeds: Sequence[tuple[AccountSeed, int]]) -> None:
        for seed, mark in seeds:
            await self.seed(seed, mark)

    @abstractmethod
    async def settle(self, request_id: str, cost_micros: int) -> None: ...

    @abstractmethod
    async def account_view(self, account_id: str) -> AccountView | None: ...

    @abstractmethod
    async def held_micros(self, account_id: str) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...
