"""The simulation loop: a scripted market (scenario.py) run in virtual time (events.py) through the
gateway's own routing, health, audit, billing and pricing code. Deterministic for the scenario's seed:
one `random.Random` is threaded through traffic, seller behaviours and re-probes, and nothing reads a
clock or iterates a set.

    report = Engine(load_scenario("normal_day.toml")).run()
"""

from __future__ import annotations

import random
from collections.abc import Callable

from dragonfly.domain.money import TradeCost
from dragonfly.domain.usage_audit import UsageAudit
from dragonfly.gateway.snapshot import ListingInfo
from dragonfly.gateway.trade import TradeState, Usage
from dragonfly.simulate.events import Clock
from dragonfly.simulate.health import HealthModel, policy_of
from dragonfly.simulate.market import SimMarket
from dragonfly.simulate.metrics import AlarmSeen, Metrics
from dragonfly.simulate.pricing import Pricer
from dragonfly.simulate.report import Report, build_report
from dragonfly.simulate.scenario import Scenario
from dragonfly.simulate.trade import SimTrade
from dragonfly.simulate.traffic import Traffic

__all__ = ["DRAIN_MS", "Engine", "Progress"]

Progress = Callable[[float, int], None]
"""Called with the share of simulated time done (0..1) and the requests so far."""
DRAIN_MS = 900_000
"""After the last arrival, requests in flight run to their end, for at most this long."""
PROGRESS_STEPS = 100


class Engine:
    def __init__(self, scenario: Scenario, *, progress: Progress | None = None) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.clock = Clock()
        self.market = SimMarket(scenario)
        self.duration_ms = int(scenario.duration_s * 1000)
        bucket_ms = int((scenario.bucket_s or scenario.duration_s / 96) * 1000) or 1
        self.metrics = Metrics(
            [p.id for p in scenario.profiles], [x.id for x in scenario.listings], self.duration_ms, bucket_ms
        )
        self.health = HealthModel(
            policy_of(scenario.health), self.market, self.clock, self.rng, self.metrics.changes.append
        )
        self.audit = UsageAudit()
        self.pricer = Pricer(
            self.market,
            self.clock,
            int(scenario.gateway.pricing_period_s * 1000),
            self.metrics.price_moves.append,
        )
        self.traffic = Traffic(scenario, self.rng)
        self.read_timeout_ms = int(scenario.gateway.upstream_read_timeout_s * 1000)
        # None: Dragonfly counts with the seller's tokenizer (an honest report is the count itself).
        self.tokenizer_ratio = {
            m.id: None if m.tokenizer == "exact" else m.tokenizer_ratio for m in scenario.models
        }
        self.inflight = 0
        self._progress = progress
        self._next_progress = 0

    def run(self) -> Report:
        clock = self.clock
        self.pricer.start()
        first = self.traffic.next_arrival(0)
        if first is not None:
            clock.at(first, self._arrive)
        clock.run(self.duration_ms)
        self.pricer.stop()
        # Let the requests in flight end (their events are all that is left but re-probes).
        limit = self.duration_ms + DRAIN_MS
        while self.inflight and clock.pending() and clock.now < limit:
            clock.step()
        if self._progress is not None:
            self._progress(1.0, self.metrics.requests)
        return build_report(self)

    def _arrive(self, _: object) -> None:
        self.inflight += 1
        SimTrade(self, self.traffic.request()).start()
        now = self.clock.now
        nxt = self.traffic.next_arrival(now)
        if nxt is not None:
            self.clock.at(nxt, self._arrive)
        if self._progress is not None and now >= self._next_progress:
            self._progress(now / self.duration_ms, self.metrics.requests)
            self._next_progress = now + self.duration_ms // PROGRESS_STEPS

    # -- what trades report ----------------------------------------------------------------------------

    def leg_failed(self, listing: ListingInfo, error_type: str) -> None:
        """`Inference._leg_failed`: the native market and listing health hear of a failed attempt."""
        self.market.router.market.record_result(listing.id, False, None, None, self.clock.now_ms)
        self.health.failed(listing, error_type)

    def settled(
        self, trade: TradeState, listing: ListingInfo, usage: Usage, cost: TradeCost, profile: str
    ) -> None:
        now = self.clock.now
        bad = self.market.listings[listing.id].spec.behaviour.bad_at(now / 1000)
        self.metrics.settled(
            now,
            profile,
            listing.id,
            cost.charge,
            cost.payout + cost.reserve,
            (usage.native_prompt, usage.native_completion),
            (usage.counted_prompt or 0, usage.counted_completion or 0),
            (usage.prompt, usage.completion),
            usage.audit == "flagged",
            bad,
        )
        # The control plane's usage audit (workers/usage_audit.py `_feed`), in settlement order.
        for kind, reported, counted in (
            ("prompt", usage.native_prompt, usage.counted_prompt),
            ("completion", usage.native_completion, usage.counted_completion),
        ):
            if reported is None or counted is None:
                continue
            alarm = self.audit.observe(
                listing.model, kind, listing.seller_id, reported, counted, trade.request_id
            )
            if alarm is not None:
                bad_trades = sum(
                    self.metrics.listings[x.id].bad_trades
                    for x in self.market.listings.values()
                    if x.spec.seller == alarm.seller and x.spec.model == alarm.model
                )
                self.metrics.alarms.append(AlarmSeen(now, alarm, bad_trades))

    def request_done(
        self, t: SimTrade, outcome: str, error_code: str | None, ttft_ms: int | None, served: str | None
    ) -> None:
        self.inflight -= 1
        self.metrics.request_done(t.t_arrival, t.profile.id, outcome, error_code, ttft_ms, served)
