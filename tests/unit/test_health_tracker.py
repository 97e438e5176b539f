"""The data plane's health tracker (gateway/health.py) without a database: which outcomes move a
listing's streaks, when a transition is queued, and that the status the snapshot shows is the one
judged."""

from __future__ import annotations

from dataclasses import replace

from support.listings import listing_info, snapshot_of

from dragonfly.domain.health import HealthPolicy
from dragonfly.gateway.health import HealthTracker
from dragonfly.gateway.snapshot import ListingInfo, Snapshot

CHEAP = listing_info("cheap", seller_id="s1", model="m", upstream_model="u", base_url="http://x")
OTHER = replace(CHEAP, id="other", seller_id="s2")


def _snapshot(*listings: ListingInfo) -> Snapshot:
    return snapshot_of(listings)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


async def _noop() -> None:
    return None


def _tracker(snap: list[Snapshot], clock: Clock | None = None) -> HealthTracker:
    return HealthTracker(HealthPolicy(), lambda: snap[0], lambda: None, _noop, clock=clock or Clock())


def test_five_failures_in_a_row_queue_a_degradation_with_the_market_as_evidence() -> None:
    snap = [_snapshot(CHEAP, OTHER)]
    t = _tracker(snap)
    for _ in range(3):
        t.finished(OTHER, True, "stop")
    for _ in range(4):
        t.failed(CHEAP, "http_503")
    t.failed(CHEAP, "http_429")  # back-pressure: neutral
    t.finished(CHEAP, False, None)  # the buyer cancelled: neutral
    assert t._pending == {}
    t.failed(CHEAP, "timeout")
    seen, transition = t._pending["cheap"]
    assert (seen, transition.to, transition.cause) == ("active", "degraded", "consecutive_failures")
    ev = transition.evidence
    assert (ev.failures_in_row, ev.failed, ev.market_ok, ev.last_failure) == (5, 5, 3, "timeout")


def test_a_success_breaks_the_streak_and_a_broken_stream_extends_it() -> None:
    t = _tracker([_snapshot(CHEAP)])
    for _ in range(4):
        t.failed(CHEAP, "connect_error")
    t.finished(CHEAP, True, "stop")
    for _ in range(4):
        t.finished(CHEAP, False, "error")
    assert t._pending == {}
    t.finished(CHEAP, False, "error")
    assert t._pending["cheap"][1].to == "degraded"


def test_the_streak_that_degraded_keeps_counting_and_other_changes_start_afresh() -> None:
    snap = [_snapshot(CHEAP, OTHER)]
    t = _tracker(snap)
    for _ in range(5):
        t.failed(CHEAP, "http_500")
    t._pending.clear()  # as if written; the snapshot now shows it degraded
    snap[0] = _snapshot(replace(CHEAP, contract_status="degraded"), OTHER)
    for _ in range(4):
        t.failed(CHEAP, "http_500")
    assert t._pending == {}
    t.failed(CHEAP, "http_500")
    assert t._pending["cheap"][1].to == "suspended"
    t._pending.clear()
    # Back on probation after a re-probe: the streaks start again.
    snap[0] = _snapshot(replace(CHEAP, contract_status="suspended"), OTHER)
    t.failed(CHEAP, "http_500")
    snap[0] = _snapshot(replace(CHEAP, contract_status="degraded"), OTHER)
    for _ in range(4):
        t.finished(CHEAP, True, "stop")
    assert t._pending == {}
    t.finished(CHEAP, True, "stop")
    assert t._pending["cheap"][1].to == "active"


def test_quiet_after_a_refused_write_and_nothing_for_other_statuses() -> None:
    clock = Clock()
    t = _tracker([_snapshot(replace(CHEAP, contract_status="pending"))], clock)
    for _ in range(20):
        t.failed(CHEAP, "http_502")
    assert t._pending == {}
    t = _tracker([_snapshot(CHEAP)], clock)
    t._quiet_until["cheap"] = clock.now + 1_000
    for _ in range(6):
        t.failed(CHEAP, "http_502")
    assert t._pending == {}
    clock.now += 1_000
    t.failed(CHEAP, "http_502")
    assert t._pending["cheap"][1].to == "degraded"
