"""The state-store interface: one atomic call to admit a request, one to settle it, and a re-seed from the
database that SETs (never adds).

Money model, identical in every implementation (per account; keys of the account alike):

    available = balance - held - pending

- `balance`: the database balance as of the last re-seed (SET, never incremented by anything else).
- `held`: worst-case holds of admitted requests not settled yet (each with a lease that expires).
- `pending`: costs settled since the last re-seed, each entry numbered by a per-account sequence.
  A settlement is committed to the database *before* `settle` is called, so an entry numbered at or
  below a sequence `mark` read *before* a database read is already part of what that read returns.
  `seed(seed, mark)` therefore SETs the balance and drops exactly the entries numbered `<= mark`;
  entries applied while the database was being read stay, so a race can only over-count (fail
  closed) until the next re-seed, never under-count. An expired hold (its instance died) turns into a
  pending entry of the full hold for the same reason: whether its trade committed or not, the next
  re-seed makes the numbers exact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dragonfly.errors import ServiceUnavailable
from dragonfly.record import record

Refusal = Literal["insufficient_balance", "budget_exceeded", "key_rpm", "listing_rpm", "listing_concurrency"]

# Expired holds released per admission (bounded work inside the atomic call).
SWEEP_MAX = 32
MINUTE_MS = 60_000
# A listing's rpm window counts admissions per whole second: the last RPM_WINDOW_S seconds (the current
# one included), so its size is bounded by the window, not by the request rate.
RPM_WINDOW_S = MINUTE_MS // 1000


def rpm_retry_after_s(oldest_second: int, now_ms: int) -> int:
    """Seconds until the oldest second still counted leaves the rpm window (when second + 60 starts),
    rounded up: at least 1."""
    return -(-((oldest_second + RPM_WINDOW_S) * 1000 - now_ms) // 1000)


class StateUnavailable(ServiceUnavailable):
    """The shared state store cannot be reached (or the account cannot be seeded): admission fails
    closed with 503 `service_unavailable` and `retry-after`, never with per-instance counters."""

    def __init__(self, message: str = "Admission is temporarily unavailable; retry shortly.") -> None:
        super().__init__(message)


@record
class AdmissionRequest:
    request_id: str
    account_id: str
    key_id: str
    listing_id: str
    hold_micros: int  # worst-case cost at the chosen listing
    key_budget_micros: int | None  # monthly budget of the key, None = no budget
    listing_rpm_cap: int | None
    listing_concurrency_cap: int | None
    now_ms: int
    lease_ttl_ms: int = 15 * 60 * 1000  # longer than the upstream total timeout: a live request keeps it


@record
class Admission:
    ok: bool
    refusal: Refusal | None = None
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class AccountSeed:
    """Database values for one account: its cash balance and the month's settled spend of its keys
    (every key of the account that may be admitted; a key missing here is not admitted until seeded)."""

    account_id: str
    balance_micros: int
    month: str  # YYYY-MM, UTC
    key_spend: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountView:
    balance_micros: int
    held_micros: int
    pending_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros - self.pending_micros


# Reads one account's seed from the database; used on first touch (account or key not in the store).
SeedLoader = Callable[[str], Awaitable[AccountSeed]]


class StateStore(Protocol):
    async def admit(self, req: AdmissionRequest) -> Admission:
        """Check and reserve, all or nothing: balance hold, key budget hold, listing rpm, listing
        concurrency lease. An unseeded account is loaded through the loader first. Raises
        `StateUnavailable` when the store cannot answer (fail closed)."""
        ...

    async def settle(self, request_id: str, cost_micros: int) -> None:
        """Release the hold and lease of `request_id` (admitted by this store instance); count
        `cost_micros` (0 for a void) as pending spend of the account and key. Idempotent. Never raises
        for an unreachable store: the settlement is kept and applied when the store answers again."""
        ...

    async def seed_marks(self, account_ids: Sequence[str]) -> dict[str, int]:
        """The pending-sequence of each account; read it BEFORE reading the database for `seed`."""
        ...

    async def seed(self, seed: AccountSeed, mark: int) -> None:
        """SET balance and key spend from the database; drop pending entries numbered `<= mark`."""
        ...

    async def seed_many(self, seeds: Sequence[tuple[AccountSeed, int]]) -> None:
        """`seed` for many accounts (one round trip where the store allows it)."""
        ...

    def set_loader(self, loader: SeedLoader | None) -> None: ...

    async def account_view(self, account_id: str) -> AccountView | None:
        """None when the account is not seeded."""
        ...

    async def held_micros(self, account_id: str) -> int: ...

    async def close(self) -> None: ...


async def seed_now(store: StateStore, seed: AccountSeed) -> None:
    """Seed without a concurrent database read in between (tests, tools)."""
    marks = await store.seed_marks([seed.account_id])
    await store.seed(seed, marks[seed.account_id])
