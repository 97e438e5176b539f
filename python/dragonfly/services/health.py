"""Health transitions written to the database (the state machine is domain/health.py).

Every transition is one transaction: the contract's status (a compare-and-set on the status the deciding
party saw, so of two instances that both saw `active` only one degrades it), the listing's
`contract_status`, the re-probe schedule (`listing_health`), a check-history entry with the evidence
(`health:<status>`, `health:reprobe`, ...) and a change-sequence bump, so every data-plane instance
reloads. A suspension first takes the model's ejection lock and checks the ejection share against the
database, which every instance shares.

An operator suspension is never touched here: it suspends the listing itself (`status = suspended`), and
nothing in this module moves a listing whose status is `suspended` (services/admin_listings.py lifts it).
"""

from __future__ import annotations

from typing import Literal

from dragonfly.config import Settings
from dragonfly.domain import health
from dragonfly.domain.health import HealthPolicy, ReprobePlan, Transition
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import health as repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.workers import probes

LiveResult = Literal["applied", "stale", "held"]


def policy_from(settings: Settings) -> HealthPolicy:
    return HealthPolicy(
        degrade_after=settings.health_degrade_after,
        suspend_after=settings.health_suspend_after,
        recover_after=settings.health_recover_after,
        window_ms=int(settings.health_window_s * 1000),
        min_requests=settings.health_min_requests,
        rate_margin=settings.health_rate_margin,
        base_ejection_ms=int(settings.health_base_ejection_s * 1000),
        max_ejection_ms=int(settings.health_max_ejection_s * 1000),
        max_ejected_share=settings.health_max_ejected_pct / 100,
    )


def cause_text(t: Transition, policy: HealthPolicy) -> str:
    ev = t.evidence
    if t.cause == "consecutive_failures":
        last = f" (last: {ev.last_failure})" if ev.last_failure else ""
        return f"{ev.failures_in_row} failed calls in a row{last}"
    if t.cause == "success_rate":
        assert ev.rate is not None and ev.market_rate is not None
        return (
            f"success rate {ev.rate:.0%} over the last {ev.window_s:g} s, more than {policy.rate_margin:.0%}"
            f" below the model's {ev.market_rate:.0%}"
        )
    return f"{ev.successes_in_row} successful calls in a row"


async def _schedule(tx: Executor, listing_id: str) -> tuple[int, int | None]:
    row = await repo.get(tx, listing_id)
    return (int(row["ejections"]), row["last_ejected_at"]) if row else (0, None)


async def _may_suspend(tx: Executor, dialect: str, listing: Row, policy: HealthPolicy) -> tuple[bool, str]:
    await repo.lock_model(tx, dialect, listing["model"])
    routable, ejected = await repo.model_counts(tx, listing["model"])
    at_most = f"{policy.max_ejected_share:.0%}"
    share = f"{ejected} of the model's {routable} routable listings ejected, at most {at_most}"
    return health.may_eject(routable, ejected, policy), share


async def _move(
    tx: Executor, listing: Row, contract: Row, to: str, reason: str | None, plan: ReprobePlan, now: int
) -> bool:
    if to != contract["status"]:
        if not await contracts_repo.set_status_if(
            tx, contract_id=contract["id"], expected=contract["status"], status=to, reason=reason, now=now
        ):
            return False
        await listings_repo.update(tx, listing["id"], {"contract_status": to}, now=now)
        await changes.bump(tx)
    else:
        await contracts_repo.set_status(tx, contract_id=contract["id"], status=to, reason=reason, now=now)
    await repo.save(
        tx,
        listing["id"],
        ejections=plan.ejections,
        last_ejected_at=plan.last_ejected_at,
        reprobe_at=plan.reprobe_at,
        now=now,
    )
    return True


async def _check(tx: Executor, contract: Row, kind: str, passed: bool, detail: str, now: int) -> None:
    await contracts_repo.add_checks(
        tx, contract_id=contract["id"], checks=[(new_id(), kind, passed, detail[:1000], now)]
    )


async def apply_live(
    db: Database,
    policy: HealthPolicy,
    *,
    listing_id: str,
    expected: str,
    transition: Transition,
    instance: str,
    now: int | None = None,
) -> LiveResult:
    """Apply a transition one instance's traffic decided while it saw the contract `expected`.
    `stale`: the contract or listing moved meanwhile (nothing written); `held`: a suspension the
    ejection share does not allow (only a check entry is written)."""
    at = now_ms() if now is None else now
    evidence = f"{transition.evidence.describe()}; seen by {instance}"
    async with db.transaction() as tx:
        listing = await listings_repo.get(tx, listing_id)
        contract = await contracts_repo.current_for_listing(tx, listing_id)
        if listing is None or listing["status"] == "suspended" or contract is None:
            return "stale"
        if contract["status"] != expected:
            return "stale"
        cause = cause_text(transition, policy)
        if transition.to == "suspended":
            allowed, share = await _may_suspend(tx, db.dialect, listing, policy)
            if not allowed:
                detail = f"not suspended ({share}): {cause}; {evidence}"
                await _check(tx, contract, "health:suspension_held", False, detail, at)
                return "held"
        ejections, last = await _schedule(tx, listing_id)
        plan = health.on_live_transition(
            transition.to, ejections=ejections, last_ejected_at=last, now_ms=at, policy=policy
        )
        if transition.to == "suspended":
            reason = f"health: suspended after {cause} (ejection {plan.ejections}); re-probed after"
            reason += f" {iso(plan.reprobe_at)}"
        elif transition.to == "degraded":
            reason = f"health: {cause}"
        else:
            reason = None
        if not await _move(tx, listing, contract, transition.to, reason, plan, at):
            return "stale"
        then = f"; re-probed after {iso(plan.reprobe_at)}" if plan.reprobe_at is not None else ""
        detail = f"{transition.to}: {cause}; {evidence}{then}"
        await _check(tx, contract, f"health:{transition.to}", transition.to == "active", detail, at)
    return "applied"


async def _reprobe_target(db: Executor, listing_id: str) -> tuple[Row, Row] | None:
    """The listing and its contract when a re-probe may move them: an active listing (not paused, not
    suspended by the operator) with a degraded or health-suspended contract."""
    listing = await listings_repo.get(db, listing_id)
    contract = await contracts_repo.current_for_listing(db, listing_id)
    if listing is None or contract is None or listing["status"] != "active":
        return None
    return (listing, contract) if contract["status"] in ("degraded", "suspended") else None


async def reprobe(
    db: Database, settings: Settings, box: SecretBox, policy: HealthPolicy, listing_id: str, *, instance: str
) -> str | None:
    """The background re-probe of one degraded or suspended listing (claimed by `instance`): run the
    admission probe and apply `domain.health.after_reprobe`, recording the run and a `health:reprobe`
    entry in one transaction. Returns the contract status afterwards (None: nothing to re-probe)."""
    if not await _reprobe_target(db, listing_id):
        await repo.release(db, listing_id, instance)
        return None
    probed = await probes.run_probe(db, settings, box, listing_id)
    run = probed.run
    at = now_ms()
    async with db.transaction() as tx:
        target = await _reprobe_target(tx, listing_id)
        if target is None:  # moved while the probe ran (resumed by its seller, suspended by an operator)
            await repo.release(tx, listing_id, instance)
            return None
        listing, contract = target
        await probes.record_run(tx, probed, at)
        may_suspend, share = True, ""
        if contract["status"] == "degraded" and not run.passed:
            may_suspend, share = await _may_suspend(tx, db.dialect, listing, policy)
        ejections, last = await _schedule(tx, listing_id)
        plan = health.after_reprobe(
            contract["status"],
            run.passed,
            ejections=ejections,
            last_ejected_at=last,
            now_ms=at,
            may_suspend=may_suspend,
            policy=policy,
        )
        failed = probes.first_failure(run)
        after = f"re-probed after {iso(plan.reprobe_at)}" if plan.reprobe_at is not None else ""
        if plan.status == "suspended":
            reason: str | None = f"health: re-probe {plan.note} ({failed}); {after}"
        elif plan.status == "degraded":
            reason = f"health: re-probe {plan.note}" + (f" ({failed})" if failed else "")
        else:
            reason = None
        if not await _move(tx, listing, contract, plan.status, reason, plan, at):
            await repo.release(tx, listing_id, instance)
            return None
        moved = f"{contract['status']} -> {plan.status}"
        parts = [f"{moved}: re-probe {plan.note}", failed or "every check passed"]
        if share and not may_suspend:
            parts.append(share)
        if plan.reprobe_at is not None:
            parts.append(f"next re-probe after {iso(plan.reprobe_at)}")
        await _check(tx, contract, "health:reprobe", run.passed, "; ".join(parts), at)
    return plan.status
