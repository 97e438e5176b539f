"""Operator suspension of a listing, and lifting it again.

Suspending makes the listing unroutable at once: its status and its contract's status become `suspended`
and the change sequence moves in the same transaction, so every data-plane instance drops it at its next
snapshot load. Sellers cannot change a suspended listing (409 `conflict`, services/listings.py); a seller's
own probe records its checks but does not touch a suspended contract (workers/probes.py).

Unsuspending re-runs the admission probe and lifts the suspension only when it passes: the contract becomes
`active` and the listing goes back to the status it had when it was suspended (`active` for an active or
pending one; a listing its seller had paused stays `paused`, one awaiting a price confirmation stays in
`price_review`). A failing probe leaves everything suspended and the answer names the failed check.
"""

from __future__ import annotations

from typing import Any

from dragonfly.config import Settings
from dragonfly.errors import Conflict, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.listings import render, render_contract
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import suspensions as repo
from dragonfly.workers import probes

SUSPENDED = "suspended"


def contract_reason(reason: str | None) -> str:
    """What the seller reads as the contract's `reason` (GET /v1/market/listings/:id/contracts)."""
    return f"suspended by the operator: {reason}" if reason else "suspended by the operator"


def status_after_lift(previous_status: str) -> str:
    """The listing status once a suspension is lifted (its probe has just passed, so the contract is
    active): a seller's pause and a pending price confirmation survive the suspension."""
    return previous_status if previous_status in ("paused", "price_review") else "active"


def render_suspension(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "listing_id": row["listing_id"],
        "reason": row["reason"],
        "suspended_by": row["suspended_by"],
        "suspended_at": iso(row["suspended_at"]),
        "previous_status": row["previous_status"],
        "lifted_at": iso(row["lifted_at"]),
        "lifted_by": row["lifted_by"],
        "lift_probe_run_id": row["lift_probe_run_id"],
    }


async def _listing(db: Executor, listing_id: str) -> Row:
    row = await listings_repo.get(db, listing_id)
    if row is None:
        raise NotFound("Listing not found.")
    return row


async def _view(db: Executor, listing_id: str, suspension_id: str) -> dict[str, Any]:
    listing = await _listing(db, listing_id)
    contract = await contracts_repo.current_for_listing(db, listing_id)
    suspension = await repo.get(db, suspension_id)
    assert suspension is not None
    return {
        "listing": render(listing),
        "contract": render_contract(contract) if contract else None,
        "suspension": render_suspension(suspension),
    }


async def suspend(db: Database, *, listing_id: str, actor_id: str, reason: str | None) -> dict[str, Any]:
    now = now_ms()
    suspension_id = new_id()
    async with db.transaction() as tx:
        listing = await _listing(tx, listing_id)
        if await repo.open_for_listing(tx, listing_id) is not None:
            raise Conflict("The listing is already suspended.")
        previous = listing["status"] if listing["status"] != SUSPENDED else "pending"
        await repo.insert(
            tx,
            suspension_id=suspension_id,
            listing_id=listing_id,
            reason=reason,
            actor_id=actor_id,
            previous_status=previous,
            now=now,
        )
        await listings_repo.update(
            tx, listing_id, {"status": SUSPENDED, "contract_status": SUSPENDED}, now=now
        )
        contract = await contracts_repo.current_for_listing(tx, listing_id)
        if contract is not None:
            await contracts_repo.set_status(
                tx, contract_id=contract["id"], status=SUSPENDED, reason=contract_reason(reason), now=now
            )
            await contracts_repo.add_checks(
                tx,
                contract_id=contract["id"],
                checks=[(new_id(), "operator:suspend", False, contract_reason(reason), now)],
            )
        await changes.bump(tx)
        return await _view(tx, listing_id, suspension_id)


def _first_failure(run: dict[str, Any]) -> str:
    for check in run["checks"]:
        if not check["passed"]:
            return f"{check['kind']}: {check['detail']}"
    return "the probe did not pass"


async def unsuspend(
    db: Database, settings: Settings, box: SecretBox, *, listing_id: str, actor_id: str
) -> dict[str, Any]:
    """Re-run the admission probe; lift the suspension only if it passes. The probe run (recorded in the
    listing's probe history either way) is part of the answer."""
    await _listing(db, listing_id)
    suspension = await repo.open_for_listing(db, listing_id)
    if suspension is None:
        raise Conflict("The listing is not suspended.")
    run = await probes.probe_listing(db, settings, box, listing_id)
    if not run["passed"]:
        view = await _view(db, listing_id, suspension["id"])
        return {"unsuspended": False, "reason": _first_failure(run), **view, "probe_run": run}
    now = now_ms()
    async with db.transaction() as tx:
        listing = await _listing(tx, listing_id)
        if not await repo.lift(
            tx, suspension_id=suspension["id"], actor_id=actor_id, probe_run_id=run["id"], now=now
        ):
            raise Conflict("The suspension was lifted meanwhile.")
        status = status_after_lift(suspension["previous_status"])
        if listing["status"] != SUSPENDED:  # it moved while suspended (e.g. its pool key was deleted)
            status = listing["status"]
        await listings_repo.update(tx, listing_id, {"status": status, "contract_status": "active"}, now=now)
        contract = await contracts_repo.current_for_listing(tx, listing_id)
        if contract is not None:
            await contracts_repo.set_status(
                tx, contract_id=contract["id"], status="active", reason=None, now=now
            )
            await contracts_repo.add_checks(
                tx,
                contract_id=contract["id"],
                checks=[(new_id(), "operator:unsuspend", True, "the admission probe passed", now)],
            )
        await changes.bump(tx)
        view = await _view(tx, listing_id, suspension["id"])
    return {"unsuspended": True, "reason": None, **view, "probe_run": run}
