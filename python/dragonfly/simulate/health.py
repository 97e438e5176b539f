"""Listing health in the simulation: the data plane's live record and verdicts (`domain.health.
LiveHealth`, the same object gateway/health.py's tracker keeps), the transition written as
services/health.py `apply_live` writes it (ejection share `may_eject`, schedule `on_live_transition`),
and the control plane's re-probes (workers/reprobe.py: `after_reprobe`) as events in virtual time.

What differs from a deployment, on purpose: a transition is applied the moment it is decided (the
gateway queues it for a background writer, a few milliseconds), and a re-probe runs exactly when due
(the worker looks every second)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from dragonfly.domain import health
from dragonfly.domain.health import HealthPolicy, Outcome, Transition
from dragonfly.gateway.health import STALE_QUIET_MS
from dragonfly.gateway.snapshot import ListingInfo
from dragonfly.simulate.behaviours import PROBE_CHECKS
from dragonfly.simulate.events import EPOCH_MS, Clock
from dragonfly.simulate.market import SimListing, SimMarket
from dragonfly.simulate.scenario import Health

__all__ = ["HealthModel", "StatusChange", "policy_of"]


def policy_of(h: Health) -> HealthPolicy:
    """The scenario's settings as services/health.py `policy_from` maps the DRAGONFLY_HEALTH_* ones."""
    return HealthPolicy(
        degrade_after=h.degrade_after,
        suspend_after=h.suspend_after,
        recover_after=h.recover_after,
        window_ms=int(h.window_s * 1000),
        min_requests=h.min_requests,
        rate_margin=h.rate_margin,
        base_ejection_ms=int(h.base_ejection_s * 1000),
        max_ejection_ms=int(h.max_ejection_s * 1000),
        max_ejected_share=h.max_ejected_pct / 100,
    )


@dataclass(frozen=True, slots=True)
class StatusChange:
    t_ms: int  # simulated
    listing_id: str
    before: str
    after: str
    cause: str  # consecutive_failures | success_rate | recovered | reprobe | suspension_held


class HealthModel:
    def __init__(
        self,
        policy: HealthPolicy,
        market: SimMarket,
        clock: Clock,
        rng: random.Random,
        on_change: Callable[[StatusChange], None],
    ) -> None:
        self.policy = policy
        self.live = health.LiveHealth(policy)
        self._market = market
        self._clock = clock
        self._rng = rng
        self._on_change = on_change
        self._quiet_until: dict[str, int] = {}

    # -- what gateway/chat.py reports ------------------------------------------------------------------

    def failed(self, listing: ListingInfo, error_type: str) -> None:
        self._observe(listing, health.classify(error_type), error_type)

    def finished(self, listing: ListingInfo, ok: bool, finish_reason: str | None) -> None:
        self._observe(listing, health.stream_outcome(ok, finish_reason), "broken_answer")

    def _observe(self, listing: ListingInfo, outcome: Outcome, detail: str) -> None:
        if outcome == "neutral":
            return
        x = self._market.listings[listing.id]
        status, now = x.contract_status, self._clock.now_ms
        if not self.live.observe(listing.id, status, outcome, now, detail):
            return
        if self._quiet_until.get(listing.id, 0) > now:
            return
        peers = self._market.snapshot.listings_by_model.get(listing.model, ())
        verdict = self.live.verdict(listing.id, status, now, (other.id for other in peers))
        if verdict is not None:
            self._apply_live(x, status, verdict)

    # -- services/health.py apply_live ---------------------------------------------------------------

    def _apply_live(self, x: SimListing, seen: str, t: Transition) -> None:
        now = self._clock.now_ms
        if x.contract_status != seen:
            self._quiet_until[x.id] = now + STALE_QUIET_MS
            return
        if t.to == "suspended":
            routable, ejected = self._market.model_counts(x.spec.model)
            if not health.may_eject(routable, ejected, self.policy):
                self._quiet_until[x.id] = now + self.policy.base_ejection_ms
                self._on_change(StatusChange(self._clock.now, x.id, seen, seen, "suspension_held"))
                return
        plan = health.on_live_transition(
            t.to, ejections=x.ejections, last_ejected_at=x.last_ejected_at, now_ms=now, policy=self.policy
        )
        self._move(x, plan, t.cause)

    def _move(self, x: SimListing, plan: health.ReprobePlan, cause: str) -> None:
        before = x.contract_status
        x.contract_status = plan.status
        x.ejections, x.last_ejected_at, x.reprobe_at = plan.ejections, plan.last_ejected_at, plan.reprobe_at
        x.schedule += 1
        if plan.reprobe_at is not None:
            self._clock.at(plan.reprobe_at - EPOCH_MS, self._reprobe, (x, x.schedule))
        self._market.reload()
        if before != plan.status:
            self._on_change(StatusChange(self._clock.now, x.id, before, plan.status, cause))

    # -- workers/reprobe.py ----------------------------------------------------------------------------

    def _reprobe(self, arg: tuple[SimListing, int]) -> None:
        x, schedule = arg
        if schedule != x.schedule or x.contract_status not in ("degraded", "suspended"):
            return  # moved since this re-probe was scheduled: the schedule is void
        passed_checks = x.spec.behaviour.probe(self._clock.now / 1000, self._rng)
        self._market.record_probe(x, passed_checks, PROBE_CHECKS)
        passed = passed_checks == PROBE_CHECKS
        may_suspend = True
        if x.contract_status == "degraded" and not passed:
            routable, ejected = self._market.model_counts(x.spec.model)
            may_suspend = health.may_eject(routable, ejected, self.policy)
        plan = health.after_reprobe(
            x.contract_status,
            passed,
            ejections=x.ejections,
            last_ejected_at=x.last_ejected_at,
            now_ms=self._clock.now_ms,
            may_suspend=may_suspend,
            policy=self.policy,
        )
        self._move(x, plan, "reprobe")
