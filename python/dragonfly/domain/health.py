"""Listing health from live traffic: outlier ejection as Envoy does it, in two steps (ARCHITECTURE.md,
Listing health). Pure: no I/O, time is an argument (milliseconds).

What counts (`classify`, `stream_outcome`): a connect error, a timeout, any 5xx, 401/403/404, a redirect,
an answer that is not usable (invalid body, an error object in a 200, a stream that broke or carried an
error before its answer was complete) is a FAILURE. 400/413/422 (the buyer's request) and 429 (the
seller's back-pressure, which the native ranking already weighs through its reliability feature) are
NEUTRAL: they neither break nor extend a streak and are not in the success-rate window. A buyer who
cancels a stream is neutral too.

The machine (`live_verdict`, per listing, on each instance's own traffic):

* `active` -> `degraded` (deprioritised: the native score is halved) after `degrade_after` failures in a
  row, or when over the last `window_ms` its success rate is more than `rate_margin` below the rate of
  the model's other listings (both with at least `min_requests` outcomes in the window);
* `degraded` -> `suspended` (unroutable, ejected) after `suspend_after` failures in a row (counted from
  the start of the streak that degraded it), unless that would eject more than `max_ejected_share` of the
  model's routable listings (`may_eject`);
* `degraded` -> `active` after `recover_after` successes in a row while its window is not below the
  model's rate.

Recovery of ejected listings is a background re-probe (`after_reprobe`): a suspended listing is probed
once its ejection time (`ejection_ms`: base x number of ejections, capped) has passed; a pass puts it on
probation (`degraded`), a failure ejects it again for longer. A degraded listing is probed after the base
ejection time: a pass makes it `active`, a failure suspends it (within the share).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

Outcome = Literal["success", "failure", "neutral"]
HealthStatus = Literal["active", "degraded", "suspended"]

# Upstream statuses that say something about the request or the seller's load, not its health.
NEUTRAL_HTTP = frozenset({400, 413, 422, 429})


def classify(error_type: str) -> Outcome:
    """A failed attempt's `error_type` (the receipt's `attempts[].error_type`: `connect_error`,
    `timeout`, `http_<status>`, or the kind of broken answer) as a health outcome."""
    if error_type.startswith("http_"):
        try:
            status = int(error_type[5:])
        except ValueError:
            return "failure"
        return "neutral" if status in NEUTRAL_HTTP else "failure"
    return "failure"


def stream_outcome(ok: bool, finish_reason: str | None) -> Outcome:
    """An answered attempt: `ok` when it completed. A failed one whose finish reason is `error` broke
    or carried an error before it was complete (a failure); without a finish reason the buyer went away
    (neutral); with another finish reason the answer was complete before it broke (neutral)."""
    if ok:
        return "success"
    return "failure" if finish_reason == "error" else "neutral"


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    degrade_after: int = 5
    suspend_after: int = 10
    recover_after: int = 5
    window_ms: int = 30_000
    min_requests: int = 20
    rate_margin: float = 0.2
    base_ejection_ms: int = 30_000
    max_ejection_ms: int = 300_000
    max_ejected_share: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.degrade_after < self.suspend_after:
            raise ValueError("health thresholds: need 1 <= degrade_after < suspend_after")
        if self.recover_after < 1 or self.min_requests < 1 or self.window_ms < 1:
            raise ValueError("health thresholds: recover_after, min_requests and the window must be >= 1")
        if not 0.0 <= self.rate_margin <= 1.0 or not 0.0 <= self.max_ejected_share <= 1.0:
            raise ValueError("health thresholds: rate_margin and max_ejected_share must be in [0, 1]")
        if not 1 <= self.base_ejection_ms <= self.max_ejection_ms:
            raise ValueError("health thresholds: need 1 <= base ejection time <= max ejection time")


class Window:
    """Outcomes over the last `window_ms`, in `buckets` time buckets (a ring): O(buckets) to read,
    O(1) to add. A bucket older than the window is reused; an outcome older than the bucket in its slot
    (time going backwards) is counted in that newer bucket, never lost or counted twice."""

    __slots__ = ("_bucket_ms", "_epochs", "_failed", "_ok")

    def __init__(self, window_ms: int, buckets: int = 10) -> None:
        self._bucket_ms = max(1, window_ms // buckets)
        self._epochs = [-1] * buckets
        self._ok = [0] * buckets
        self._failed = [0] * buckets

    def add(self, now_ms: int, ok: bool) -> None:
        epoch = now_ms // self._bucket_ms
        slot = epoch % len(self._epochs)
        if epoch > self._epochs[slot]:  # a bucket from an earlier turn of the ring: reuse it
            self._epochs[slot], self._ok[slot], self._failed[slot] = epoch, 0, 0
        if ok:
            self._ok[slot] += 1
        else:
            self._failed[slot] += 1

    def counts(self, now_ms: int) -> tuple[int, int]:
        """(successes, failures) in the buckets of the last window, the current one included."""
        now_epoch = now_ms // self._bucket_ms
        ok = failed = 0
        for epoch, k, f in zip(self._epochs, self._ok, self._failed, strict=True):
            if 0 <= now_epoch - epoch < len(self._epochs):
                ok, failed = ok + k, failed + f
        return ok, failed


@dataclass(slots=True)
class Streaks:
    """One listing's live record on one instance."""

    window: Window
    failures: int = 0  # in a row
    successes: int = 0  # in a row
    last_failure: str | None = None

    def observe(self, outcome: Outcome, now_ms: int, detail: str | None = None) -> None:
        if outcome == "success":
            self.successes, self.failures = self.successes + 1, 0
            self.window.add(now_ms, True)
        elif outcome == "failure":
            self.failures, self.successes = self.failures + 1, 0
            self.last_failure = detail
            self.window.add(now_ms, False)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a verdict was based on, as the seller reads it in the check history."""

    failures_in_row: int
    successes_in_row: int
    window_s: float
    ok: int
    failed: int
    market_ok: int  # the model's other listings, same window, same instance
    market_failed: int
    last_failure: str | None = None

    @property
    def requests(self) -> int:
        return self.ok + self.failed

    @property
    def market_requests(self) -> int:
        return self.market_ok + self.market_failed

    @property
    def rate(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    @property
    def market_rate(self) -> float | None:
        return self.market_ok / self.market_requests if self.market_requests else None

    def describe(self) -> str:
        def pct(rate: float | None) -> str:
            return "n/a" if rate is None else f"{rate * 100:.0f} %"

        return (
            f"in a row: {self.failures_in_row} failed, {self.successes_in_row} successful;"
            f" last {self.window_s:g} s: {self.ok} ok, {self.failed} failed ({pct(self.rate)});"
            f" the model's other listings: {self.market_ok} ok, {self.market_failed} failed"
            f" ({pct(self.market_rate)})"
        )


def evidence(streaks: Streaks, market: tuple[int, int], now_ms: int, policy: HealthPolicy) -> Evidence:
    ok, failed = streaks.window.counts(now_ms)
    return Evidence(
        failures_in_row=streaks.failures,
        successes_in_row=streaks.successes,
        window_s=policy.window_ms / 1000,
        ok=ok,
        failed=failed,
        market_ok=market[0],
        market_failed=market[1],
        last_failure=streaks.last_failure,
    )


def below_market(ev: Evidence, policy: HealthPolicy) -> bool:
    """The listing's window success rate is more than `rate_margin` below the model's other listings',
    both over at least `min_requests` outcomes."""
    if ev.requests < policy.min_requests or ev.market_requests < policy.min_requests:
        return False
    assert ev.rate is not None and ev.market_rate is not None
    return ev.rate < ev.market_rate - policy.rate_margin


@dataclass(frozen=True, slots=True)
class Transition:
    to: HealthStatus
    cause: str  # consecutive_failures | success_rate | recovered
    evidence: Evidence = field(compare=False)


def live_verdict(status: str, ev: Evidence, policy: HealthPolicy) -> Transition | None:
    """What one instance's traffic says about a listing whose contract is `status` (None: nothing)."""
    if status == "active":
        if ev.failures_in_row >= policy.degrade_after:
            return Transition("degraded", "consecutive_failures", ev)
        if below_market(ev, policy):
            return Transition("degraded", "success_rate", ev)
    elif status == "degraded":
        if ev.failures_in_row >= policy.suspend_after:
            return Transition("suspended", "consecutive_failures", ev)
        if ev.successes_in_row >= policy.recover_after and not below_market(ev, policy):
            return Transition("active", "recovered", ev)
    return None


def keeps_streaks(before: str, after: str) -> bool:
    """Whether a listing's live record survives a status change: the streak that degraded it goes on
    counting toward suspension; every other change (recovery, ejection, probation) starts afresh."""
    return (before, after) == ("active", "degraded")


class LiveHealth:
    """One instance's live record of every listing it routes to, and the verdicts it leads to: the part
    of the data plane's health tracker (gateway/health.py) without I/O, which the market simulator
    (dragonfly/simulate) drives too. Time is an argument (milliseconds).

    `observe` counts an outcome under the contract status the caller sees (a status change other than
    the degradation starts the record afresh, `keeps_streaks`) and says whether it could move the
    listing; only then is `verdict` worth asking, with the ids of the model's listings (the listing's own
    id among them is skipped) for the model's success rate."""

    __slots__ = ("_seen", "policy", "streaks")

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self.streaks: dict[str, Streaks] = {}
        self._seen: dict[str, str] = {}  # the contract status each listing's streaks were counted under

    def observe(
        self, listing_id: str, status: str, outcome: Outcome, now_ms: int, detail: str | None = None
    ) -> bool:
        """Count a non-neutral outcome; True when it could move the listing (a cheap pre-check most
        outcomes stop at: only a failure can degrade an active listing, and a degraded one moves only at
        the end of a long enough streak)."""
        streaks = self._streaks_for(listing_id, status)
        streaks.observe(outcome, now_ms, detail)
        if status == "active":
            return outcome == "failure"
        if status == "degraded":
            p = self.policy
            return streaks.failures >= p.suspend_after or streaks.successes >= p.recover_after
        return False

    def verdict(self, listing_id: str, status: str, now_ms: int, peers: Iterable[str]) -> Transition | None:
        """What the listing's record says now (None: nothing). `peers` (the model's listing ids) is
        iterated at most once, and only when the model's rate is needed or shown."""
        streaks = self.streaks[listing_id]
        judged = self._needs_market(streaks, status, now_ms)
        market = self.market(listing_id, peers, now_ms) if judged else (0, 0)
        verdict = live_verdict(status, evidence(streaks, market, now_ms, self.policy), self.policy)
        if verdict is not None and not judged:
            # The evidence shows the model's rate even when the verdict did not need it.
            market = self.market(listing_id, peers, now_ms)
            verdict = replace(verdict, evidence=evidence(streaks, market, now_ms, self.policy))
        return verdict

    def market(self, listing_id: str, peers: Iterable[str], now_ms: int) -> tuple[int, int]:
        """(successes, failures) of the model's other listings over the window."""
        ok = failed = 0
        for other in peers:
            streaks = self.streaks.get(other)
            if other != listing_id and streaks is not None:
                k, f = streaks.window.counts(now_ms)
                ok, failed = ok + k, failed + f
        return ok, failed

    def forget(self, listing_id: str) -> None:
        self.streaks.pop(listing_id, None)
        self._seen.pop(listing_id, None)

    def _streaks_for(self, listing_id: str, status: str) -> Streaks:
        streaks = self.streaks.get(listing_id)
        seen = self._seen.get(listing_id)
        if streaks is None or (seen != status and not keeps_streaks(seen or "", status)):
            streaks = Streaks(Window(self.policy.window_ms))
            self.streaks[listing_id] = streaks
        self._seen[listing_id] = status
        return streaks

    def _needs_market(self, streaks: Streaks, status: str, now_ms: int) -> bool:
        """The model's rate matters only when the listing's own window is big enough to be judged and
        the outcome could move it: a failure while active, a success streak while degraded."""
        ok, failed = streaks.window.counts(now_ms)
        if ok + failed < self.policy.min_requests:
            return False
        return streaks.failures > 0 if status == "active" else streaks.successes >= self.policy.recover_after


def may_eject(routable: int, ejected: int, policy: HealthPolicy) -> bool:
    """Whether one more of a model's `routable` listings (those that would be routable but for health,
    ejected ones included) may be ejected while `ejected` already are: never more than
    `max_ejected_share` of them at once, so the model's only listing is never ejected at 50 %."""
    return (ejected + 1) <= int(routable * policy.max_ejected_share + 1e-9)


def ejection_ms(ejections: int, policy: HealthPolicy) -> int:
    """How long the `ejections`-th ejection lasts: base x ejections, capped."""
    return min(policy.base_ejection_ms * max(1, ejections), policy.max_ejection_ms)


def next_ejections(prior: int, last_ejected_at: int | None, now_ms: int, policy: HealthPolicy) -> int:
    """The number of this ejection: one more than before, after forgiving one earlier ejection per
    maximum ejection time passed since the last one began (Envoy decrements its multiplier the same way)."""
    if last_ejected_at is not None and prior > 0:
        prior = max(0, prior - max(0, now_ms - last_ejected_at) // policy.max_ejection_ms)
    return prior + 1


@dataclass(frozen=True, slots=True)
class ReprobePlan:
    status: HealthStatus
    ejections: int
    last_ejected_at: int | None
    reprobe_at: int | None  # when the next re-probe is due; None: no more re-probes
    note: str


def after_reprobe(
    status: str,
    passed: bool,
    *,
    ejections: int,
    last_ejected_at: int | None,
    now_ms: int,
    may_suspend: bool,
    policy: HealthPolicy,
) -> ReprobePlan:
    """The outcome of a background re-probe of a `degraded` or `suspended` listing."""
    base = policy.base_ejection_ms
    if status == "suspended":
        if passed:
            return ReprobePlan(
                "degraded", ejections, last_ejected_at, now_ms + base, "passed: on probation (degraded)"
            )
        n = next_ejections(ejections, last_ejected_at, now_ms, policy)
        until = now_ms + ejection_ms(n, policy)
        return ReprobePlan("suspended", n, now_ms, until, f"failed: ejection {n}")
    if passed:
        return ReprobePlan("active", ejections, last_ejected_at, None, "passed: active again")
    if not may_suspend:
        return ReprobePlan(
            "degraded", ejections, last_ejected_at, now_ms + base, "failed: stays degraded (ejection share)"
        )
    n = next_ejections(ejections, last_ejected_at, now_ms, policy)
    return ReprobePlan("suspended", n, now_ms, now_ms + ejection_ms(n, policy), f"failed: ejection {n}")


def on_live_transition(
    to: str, *, ejections: int, last_ejected_at: int | None, now_ms: int, policy: HealthPolicy
) -> ReprobePlan:
    """The schedule after a transition decided by live traffic: a degraded listing is re-probed after
    the base ejection time, a suspended one after its ejection time, an active one not at all."""
    if to == "suspended":
        n = next_ejections(ejections, last_ejected_at, now_ms, policy)
        return ReprobePlan("suspended", n, now_ms, now_ms + ejection_ms(n, policy), f"ejection {n}")
    if to == "degraded":
        return ReprobePlan("degraded", ejections, last_ejected_at, now_ms + policy.base_ejection_ms, "")
    return ReprobePlan("active", ejections, last_ejected_at, None, "")
