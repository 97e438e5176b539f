"""What a run observes, as it happens: each attempt (leg) sent, each trade's end, each settlement, each
health transition, audit alarm and price move. `report.py` turns this into the report; the raw series
(per-bucket counts) are kept so later steps (plots, sweeps) can draw on them."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from dragonfly.domain.usage_audit import Alarm
from dragonfly.simulate.health import StatusChange
from dragonfly.simulate.pricing import PriceMove

__all__ = ["AlarmSeen", "ListingStats", "Metrics", "ProfileStats"]


@dataclass(slots=True)
class ProfileStats:
    requests: int = 0
    completed: int = 0
    failed: int = 0
    refused: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error code -> trades
    charge_micros: int = 0
    billed_tokens: int = 0
    legs: int = 0
    legs_to_bad: int = 0
    hedges: int = 0
    fallbacks: int = 0
    continuations: int = 0
    ttft_ms: list[int] = field(default_factory=list)  # buyer's wait for the first byte, completed trades
    legs_by_listing: dict[str, int] = field(default_factory=dict)
    buckets_requests: list[int] = field(default_factory=list)
    buckets_failed: list[int] = field(default_factory=list)
    buckets_charge: list[int] = field(default_factory=list)


@dataclass(slots=True)
class ListingStats:
    legs: int = 0
    legs_bad: int = 0
    served: int = 0
    charge_micros: int = 0
    seller_micros: int = 0  # payout + reserve: the seller's side of the journal
    reported_prompt: int = 0
    reported_completion: int = 0
    counted_prompt: int = 0
    counted_completion: int = 0
    billed_prompt: int = 0
    billed_completion: int = 0
    # The same, over trades settled while the seller misbehaved (its bad period).
    bad_trades: int = 0
    bad_reported: int = 0
    bad_counted: int = 0
    bad_billed: int = 0
    review_flagged: int = 0  # trades whose receipt says `usage_audit: flagged` (domain/billing.py)
    buckets_legs: list[int] = field(default_factory=list)
    buckets_served: list[int] = field(default_factory=list)
    leg_times: array[int] = field(default_factory=lambda: array("q"))  # simulated ms of each leg sent


@dataclass(frozen=True, slots=True)
class AlarmSeen:
    t_ms: int
    alarm: Alarm
    bad_trades: int  # the flagged seller's trades of the model settled in its bad period, by then


class Metrics:
    def __init__(self, profiles: list[str], listings: list[str], duration_ms: int, bucket_ms: int) -> None:
        self.bucket_ms = bucket_ms
        n = max(1, -(-duration_ms // bucket_ms))
        self.n_buckets = n
        self.profiles = {p: ProfileStats() for p in profiles}
        self.listings = {x: ListingStats() for x in listings}
        for ps in self.profiles.values():
            ps.buckets_requests, ps.buckets_failed, ps.buckets_charge = [0] * n, [0] * n, [0] * n
        for ls in self.listings.values():
            ls.buckets_legs, ls.buckets_served = [0] * n, [0] * n
        self.changes: list[StatusChange] = []
        self.alarms: list[AlarmSeen] = []
        self.price_moves: list[PriceMove] = []
        self.trades = 0  # settled trades (parts of continued streams included)
        self.requests = 0

    def bucket(self, t_ms: int) -> int:
        return min(self.n_buckets - 1, t_ms // self.bucket_ms)

    def leg(self, t_ms: int, profile: str, listing: str, bad: bool, kind: str) -> None:
        """An attempt sent; `kind`: first, fallback, hedge or continuation."""
        ps, ls = self.profiles[profile], self.listings[listing]
        ps.legs += 1
        ps.legs_by_listing[listing] = ps.legs_by_listing.get(listing, 0) + 1
        ls.legs += 1
        ls.buckets_legs[self.bucket(t_ms)] += 1
        ls.leg_times.append(t_ms)
        if bad:
            ps.legs_to_bad += 1
            ls.legs_bad += 1
        if kind == "hedge":
            ps.hedges += 1
        elif kind == "fallback":
            ps.fallbacks += 1
        elif kind == "continuation":
            ps.continuations += 1

    def request_done(
        self,
        t_arrival_ms: int,
        profile: str,
        outcome: str,
        error_code: str | None,
        ttft_ms: int | None,
        served_by: str | None,
    ) -> None:
        self.requests += 1
        ps = self.profiles[profile]
        ps.requests += 1
        b = self.bucket(t_arrival_ms)
        ps.buckets_requests[b] += 1
        if outcome == "completed":
            ps.completed += 1
            if ttft_ms is not None:
                ps.ttft_ms.append(ttft_ms)
            if served_by is not None:
                ls = self.listings[served_by]
                ls.served += 1
                ls.buckets_served[b] += 1
        else:
            if outcome == "refused":
                ps.refused += 1
            else:
                ps.failed += 1
            ps.buckets_failed[b] += 1
            code = error_code or "unknown"
            ps.errors[code] = ps.errors.get(code, 0) + 1

    def settled(
        self,
        t_ms: int,
        profile: str,
        listing: str,
        charge: int,
        seller: int,
        reported: tuple[int | None, int | None],
        counted: tuple[int, int],
        billed: tuple[int, int],
        flagged: bool,
        bad: bool,
    ) -> None:
        self.trades += 1
        ps, ls = self.profiles[profile], self.listings[listing]
        ps.charge_micros += charge
        ps.billed_tokens += billed[0] + billed[1]
        ps.buckets_charge[self.bucket(t_ms)] += charge
        ls.charge_micros += charge
        ls.seller_micros += seller
        rp, rc = reported
        ls.reported_prompt += rp or 0
        ls.reported_completion += rc or 0
        ls.counted_prompt += counted[0]
        ls.counted_completion += counted[1]
        ls.billed_prompt += billed[0]
        ls.billed_completion += billed[1]
        ls.review_flagged += flagged
        if bad:
            ls.bad_trades += 1
            ls.bad_reported += (rp or 0) + (rc or 0)
            ls.bad_counted += counted[0] + counted[1]
            ls.bad_billed += billed[0] + billed[1]
