"""The seller's way back from a health verdict: `POST /v1/market/contracts/:id/reverify` (a degraded
contract) and `POST /v1/market/contracts/:id/unsuspend` (a contract health suspended). Each re-runs the
admission probe now and, only if it passes, makes the contract `active` again; either way the run is
recorded (probe history, `probe:<kind>` checks) with a `health:reverify` / `health:unsuspend` entry, and
the answer carries the run. The ejection count is kept, so a listing that fails again is ejected longer.

An operator suspension (the listing itself `suspended`) is not the seller's to lift: 409 `conflict`
(only `POST /api/admin/listings/:id/unsuspend` lifts it). Another seller's contract is 404 `not_found`.
"""

from __future__ import annotations

from typing import Any

from dragonfly.config import Settings
from dragonfly.errors import Conflict, NotFound
from dragonfly.ids import new_id, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.listings import render_contract, render_probe_run
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import health as health_repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import suspensions as suspensions_repo
from dragonfly.workers import probes

OPERATOR_SUSPENDED = "The listing was suspended by the operator; only the operator can lift the suspension."


async def _owned(db: Database, account_id: str, contract_id: str) -> tuple[Row, Row]:
    contract = await contracts_repo.get_owned(db, account_id=account_id, contract_id=contract_id)
    listing = await listings_repo.get(db, contract["listing_id"]) if contract else None
    if contract is None or listing is None:
        raise NotFound("Contract not found.")
    return contract, listing


async def _operator_suspended(db: Database, listing: Row) -> bool:
    return listing["status"] == "suspended" or (
        await suspensions_repo.open_for_listing(db, listing["id"]) is not None
    )


async def _recover(
    db: Database, settings: Settings, box: SecretBox, listing: Row, *, expected: str, action: str
) -> dict[str, Any]:
    """Probe now; on a pass move the contract from `expected` to `active` (compare-and-set)."""
    probed = await probes.run_probe(db, settings, box, listing["id"])
    run = probed.run
    at = now_ms()
    moved = False
    async with db.transaction() as tx:
        record = await probes.record_run(tx, probed, at)
        contract = await contracts_repo.current_for_listing(tx, listing["id"])
        current = await listings_repo.get(tx, listing["id"])
        assert contract is not None
        failed = probes.first_failure(run)
        if run.passed and current is not None and current["status"] != "suspended":
            moved = await contracts_repo.set_status_if(
                tx, contract_id=contract["id"], expected=expected, status="active", reason=None, now=at
            )
        if moved:
            await listings_repo.update(tx, listing["id"], {"contract_status": "active"}, now=at)
            row = await health_repo.get(tx, listing["id"])
            await health_repo.save(
                tx,
                listing["id"],
                ejections=int(row["ejections"]) if row else 0,
                last_ejected_at=row["last_ejected_at"] if row else None,
                reprobe_at=None,
                now=at,
            )
            await changes.bump(tx)
            detail = f"requested by the seller: the admission probe passed; {expected} -> active"
        elif run.passed:
            detail = "requested by the seller: the admission probe passed, but the contract changed meanwhile"
        else:
            detail = f"requested by the seller: the admission probe failed ({failed}); still {expected}"
        await contracts_repo.add_checks(
            tx, contract_id=contract["id"], checks=[(new_id(), f"health:{action}", moved, detail, at)]
        )
        contract = await contracts_repo.current_for_listing(tx, listing["id"])
    assert contract is not None
    reason = None if moved else (failed or "the contract changed while the probe ran")
    return {
        "unsuspended" if action == "unsuspend" else "reverified": moved,
        "reason": reason,
        "contract": render_contract(contract),
        "probe_run": render_probe_run(record),
    }


async def reverify(
    db: Database, settings: Settings, box: SecretBox, *, account_id: str, contract_id: str
) -> dict[str, Any]:
    contract, listing = await _owned(db, account_id, contract_id)
    if contract["status"] != "degraded":
        hint = " Use POST /v1/market/contracts/:id/unsuspend." if contract["status"] == "suspended" else ""
        status = contract["status"]
        raise Conflict(f"Only a degraded contract can be re-verified; this one is {status}.{hint}")
    return await _recover(db, settings, box, listing, expected="degraded", action="reverify")


async def unsuspend(
    db: Database, settings: Settings, box: SecretBox, *, account_id: str, contract_id: str
) -> dict[str, Any]:
    contract, listing = await _owned(db, account_id, contract_id)
    if await _operator_suspended(db, listing):
        raise Conflict(OPERATOR_SUSPENDED)
    if contract["status"] != "suspended":
        raise Conflict(f"The contract is not suspended; it is {contract['status']}.")
    return await _recover(db, settings, box, listing, expected="suspended", action="unsuspend")
