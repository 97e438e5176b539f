"""The state-store interface: one atomic call to admit a request, one to settle it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Refusal = Literal["insufficient_balance", "budget_exceeded", "key_rpm", "listing_rpm", "listing_concurrency"]


@dataclass(frozen=True, slots=True)
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
    lease_ttl_ms: int = 15 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    refusal: Refusal | None = None
    retry_after_s: int = 0


class StateStore(Protocol):
    async def admit(self, req: AdmissionRequest) -> Admission:
        """Check and reserve, all or nothing: balance hold, key budget hold, listing rpm, listing
        concurrency lease."""
        ...

    async def settle(self, request_id: str, cost_micros: int) -> None:
        """Release the hold and lease of `request_id`; apply `cost_micros` (0 for a void) to the
        account's spend and the key's monthly spend. Idempotent."""
        ...

    async def seed_account(self, account_id: str, balance_micros: int) -> None:
        """SET (never add) the account's settled balance from the database."""
        ...

    async def seed_key_spend(self, key_id: str, month: str, spent_micros: int) -> None:
        """SET the key's settled spend for the month (YYYY-MM, UTC) from the database."""
        ...

    async def held_micros(self, account_id: str) -> int: ...

    async def close(self) -> None: ...
