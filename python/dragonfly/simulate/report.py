"""The report of a run: per profile (success, cost, TTFT, traffic to bad sellers), per listing (traffic
share, how fast health degraded and suspended it in each bad period, how fast the usage audit flagged
it, what it was paid for), per seller (revenue share), the health transitions, audit alarms and price
moves, and the per-bucket timeline (what later plots draw). Plain data: `to_dict()` is the JSON, the
same for the same seed (no wall-clock figure is in it).

Definitions:

* **success rate**: completed requests / requests (refused ones included: no listing could take them).
* **cost per 1M tokens**: what the profile's buyers were charged / the tokens billed, in USD.
* **TTFT**: the buyer's wait, from the request's arrival to its first byte (a stream's first piece, a
  non-streamed answer's body) — fallbacks and hedges included; completed requests only.
* **bad traffic share**: the profile's attempts (legs) sent to a listing while that listing misbehaved
  (its behaviour's bad period), over all its attempts.
* **episode**: one bad period of one listing: its share of its model's attempts in the equal span just
  before and during the period, and the seconds from the period's start to its first degradation and
  suspension within it (None: it never was), and from the period's end to its return to active.
* **TTFT histogram** (`ttft_histogram`): per profile, completed requests counted in log-spaced bins
  (`TTFT_BINS_PER_DECADE` per decade from 1 ms; bin `i` holds [edge[i], edge[i+1]) ms) — what the TTFT
  plot draws. Built from the run's TTFTs when the report is made, so the engine does no more work.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dragonfly.simulate.metrics import ListingStats

if TYPE_CHECKING:
    from dragonfly.simulate.engine import Engine

__all__ = [
    "TTFT_BINS_PER_DECADE",
    "Episode",
    "ListingReport",
    "ProfileReport",
    "Report",
    "build_report",
    "render_table",
    "ttft_histogram",
]

TTFT_BINS_PER_DECADE = 20


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _pct(values: list[int], q: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    return float(values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))])


@dataclass
class ProfileReport:
    strategy: str
    requests: int
    completed: int
    failed: int
    refused: int
    success_rate: float | None
    cost_per_mtok_usd: float | None
    charged_usd: float
    ttft_ms_p50: float | None
    ttft_ms_p90: float | None
    ttft_ms_p99: float | None
    bad_traffic_share: float | None
    legs: int
    fallbacks: int
    hedges: int
    continuations: int  # streams that broke and went on at another listing
    errors: dict[str, int]
    legs_by_listing: dict[str, int]


@dataclass
class Episode:
    start_s: float
    end_s: float
    share_before: float | None
    share_during: float | None
    degraded_after_s: float | None
    suspended_after_s: float | None
    recovered_after_s: float | None  # after the period's end


@dataclass
class AuditReport:
    flagged_after_s: float | None  # from the start of its bad period
    trades_to_flag: int | None  # its trades settled in its bad period until the alarm
    reported_tokens: int  # over its bad period
    counted_tokens: int
    billed_tokens: int
    overbilled_share: float | None  # (billed - counted) / counted, over its bad period
    peers_overbilled_share: float | None  # the same for the model's other listings, over the run
    review_flagged_trades: int  # receipts with usage_audit = flagged (beyond 1.5 x count + 16)


@dataclass
class ListingReport:
    seller: str
    model: str
    behaviour: str
    legs: int
    served: int
    traffic_share: float | None  # of its model's attempts, over the run
    seller_usd: float
    final_status: str
    final_input_price: float
    final_output_price: float
    episodes: list[Episode] = field(default_factory=list)
    audit: AuditReport | None = None


@dataclass
class Report:
    scenario: str
    seed: int
    duration_s: float
    requests: int
    trades: int
    profiles: dict[str, ProfileReport]
    listings: dict[str, ListingReport]
    seller_revenue_share: dict[str, float]
    health: list[dict[str, Any]]
    alarms: list[dict[str, Any]]
    price_moves: int
    timeline: dict[str, Any]
    ttft_histogram: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ttft_histogram(sorted_ms: list[int]) -> dict[str, list[float] | list[int]]:
    """Counts of `sorted_ms` in log-spaced bins from 1 ms (`edges_ms` has one more entry than
    `counts`); empty bins at both ends are dropped."""
    if not sorted_ms:
        return {"edges_ms": [], "counts": []}
    step = 1 / TTFT_BINS_PER_DECADE

    def index(ms: int) -> int:
        return math.floor(math.log10(max(ms, 1)) / step + 1e-9)

    lo, hi = index(sorted_ms[0]), index(sorted_ms[-1])
    edges = [round(10 ** ((lo + i) * step), 3) for i in range(hi - lo + 2)]
    # The values are sorted: each bin's count is a difference of two bisections (no per-value work).
    cuts = [0, *(bisect.bisect_left(sorted_ms, e) for e in edges[1:-1]), len(sorted_ms)]
    counts = [b - a for a, b in itertools.pairwise(cuts)]
    return {"edges_ms": edges, "counts": counts}


def _share(mine: int, total: int) -> float | None:
    return _r(mine / total) if total else None


def _count(times: Any, lo_ms: float, hi_ms: float) -> int:
    return bisect.bisect_left(times, hi_ms) - bisect.bisect_left(times, lo_ms)


def build_report(eng: Engine) -> Report:
    sc, m = eng.scenario, eng.metrics
    profiles: dict[str, ProfileReport] = {}
    histograms: dict[str, dict[str, Any]] = {}
    for spec in sc.profiles:
        ps = m.profiles[spec.id]
        ttft = sorted(ps.ttft_ms)
        histograms[spec.id] = ttft_histogram(ttft)
        profiles[spec.id] = ProfileReport(
            strategy=spec.strategy,
            requests=ps.requests,
            completed=ps.completed,
            failed=ps.failed,
            refused=ps.refused,
            success_rate=_share(ps.completed, ps.requests),
            cost_per_mtok_usd=_r(ps.charge_micros / ps.billed_tokens) if ps.billed_tokens else None,
            charged_usd=round(ps.charge_micros / 1e6, 6),
            ttft_ms_p50=_pct(ttft, 0.5),
            ttft_ms_p90=_pct(ttft, 0.9),
            ttft_ms_p99=_pct(ttft, 0.99),
            bad_traffic_share=_share(ps.legs_to_bad, ps.legs),
            legs=ps.legs,
            fallbacks=ps.fallbacks,
            hedges=ps.hedges,
            continuations=ps.continuations,
            errors=dict(sorted(ps.errors.items())),
            legs_by_listing={x.id: ps.legs_by_listing.get(x.id, 0) for x in sc.listings},
        )
    model_legs: dict[str, int] = {}
    for x in eng.market.listings.values():
        model_legs[x.spec.model] = model_legs.get(x.spec.model, 0) + m.listings[x.id].legs
    listings: dict[str, ListingReport] = {}
    seller_micros: dict[str, int] = {}
    for x in eng.market.listings.values():
        ls = m.listings[x.id]
        seller_micros[x.spec.seller] = seller_micros.get(x.spec.seller, 0) + ls.seller_micros
        behaviour = x.spec.behaviour
        listings[x.id] = ListingReport(
            seller=x.spec.seller,
            model=x.spec.model,
            behaviour=behaviour.kind,
            legs=ls.legs,
            served=ls.served,
            traffic_share=_share(ls.legs, model_legs[x.spec.model]),
            seller_usd=round(ls.seller_micros / 1e6, 6),
            final_status=x.contract_status,
            final_input_price=x.prices.input / 1e6,
            final_output_price=x.prices.output / 1e6,
            episodes=[
                _episode(eng, x.id, x.spec.model, start, end)
                for start, end in behaviour.bad_windows(sc.duration_s)
            ],
            audit=_audit(eng, x.id, ls) if behaviour.kind == "inflates" else None,
        )
    total_seller = sum(seller_micros.values())
    return Report(
        scenario=sc.name,
        seed=sc.seed,
        duration_s=sc.duration_s,
        requests=m.requests,
        trades=m.trades,
        profiles=profiles,
        listings=listings,
        seller_revenue_share={
            s: _r(v / total_seller) or 0.0 for s, v in seller_micros.items() if total_seller
        },
        health=[
            {"t_s": c.t_ms / 1000, "listing": c.listing_id, "from": c.before, "to": c.after, "cause": c.cause}
            for c in m.changes
        ],
        alarms=[
            {
                "t_s": a.t_ms / 1000,
                "seller": a.alarm.seller,
                "model": a.alarm.model,
                "kind": a.alarm.kind,
                "ratio": _r(a.alarm.ratio),
                "reference": _r(a.alarm.reference),
            }
            for a in m.alarms
        ],
        price_moves=len(m.price_moves),
        timeline={
            "bucket_s": m.bucket_ms / 1000,
            "listings": {
                i: {"legs": ls.buckets_legs, "served": ls.buckets_served} for i, ls in m.listings.items()
            },
            "profiles": {
                i: {
                    "requests": ps.buckets_requests,
                    "failed": ps.buckets_failed,
                    "charge_micros": ps.buckets_charge,
                }
                for i, ps in m.profiles.items()
            },
        },
        ttft_histogram=histograms,
    )


def _episode(eng: Engine, listing_id: str, model: str, start_s: float, end_s: float) -> Episode:
    m = eng.metrics
    lo, hi = start_s * 1000, end_s * 1000
    span = hi - lo
    peers = [x.id for x in eng.market.listings.values() if x.spec.model == model]

    def share(a: float, b: float) -> float | None:
        total = sum(_count(m.listings[p].leg_times, a, b) for p in peers)
        return _share(_count(m.listings[listing_id].leg_times, a, b), total)

    def first(to: str, after_ms: float, before_ms: float | None) -> float | None:
        for c in m.changes:
            if c.listing_id == listing_id and c.after == to and c.before != to and c.t_ms >= after_ms:
                if before_ms is not None and c.t_ms > before_ms:
                    return None
                return round((c.t_ms - after_ms) / 1000, 3)
        return None

    return Episode(
        start_s=start_s,
        end_s=end_s,
        share_before=share(max(0.0, lo - span), lo) if lo > 0 else None,
        share_during=share(lo, hi),
        degraded_after_s=first("degraded", lo, hi),
        suspended_after_s=first("suspended", lo, hi),
        recovered_after_s=first("active", hi, None),
    )


def _audit(eng: Engine, listing_id: str, ls: ListingStats) -> AuditReport:
    x = eng.market.listings[listing_id]
    start_ms = x.spec.behaviour.from_s * 1000
    peers = [
        eng.metrics.listings[o.id]
        for o in eng.market.listings.values()
        if o.spec.model == x.spec.model and o.id != listing_id
    ]
    billed = sum(p.billed_prompt + p.billed_completion for p in peers)
    counted = sum(p.counted_prompt + p.counted_completion for p in peers)
    alarm = next(
        (
            a
            for a in eng.metrics.alarms
            if a.alarm.seller == x.spec.seller and a.alarm.model == x.spec.model and a.t_ms >= start_ms
        ),
        None,
    )
    return AuditReport(
        flagged_after_s=None if alarm is None else round((alarm.t_ms - start_ms) / 1000, 3),
        trades_to_flag=None if alarm is None else alarm.bad_trades,
        reported_tokens=ls.bad_reported,
        counted_tokens=ls.bad_counted,
        billed_tokens=ls.bad_billed,
        overbilled_share=_r((ls.bad_billed - ls.bad_counted) / ls.bad_counted) if ls.bad_counted else None,
        peers_overbilled_share=_r((billed - counted) / counted) if counted else None,
        review_flagged_trades=ls.review_flagged,
    )


# -- the terminal table --------------------------------------------------------------------------------


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f} %"
    if kind == "usd":
        return f"${value:.4f}"
    if kind == "ms":
        return f"{value:,.0f}"
    if kind == "s":
        return f"{value:,.1f} s"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return out


def render_table(report: Report) -> str:
    out = [
        f"scenario {report.scenario}  seed {report.seed}  {report.duration_s:,.0f} simulated s  "
        f"{report.requests:,} requests  {report.trades:,} trades",
        "",
    ]
    out += _table(
        [
            "profile",
            "strategy",
            "requests",
            "success",
            "$/1M tok",
            "TTFT p50",
            "TTFT p99",
            "to bad",
            "fallbacks",
            "hedges",
        ],
        [
            [
                pid,
                p.strategy,
                _fmt(p.requests),
                _fmt(p.success_rate, "pct"),
                _fmt(p.cost_per_mtok_usd, "usd"),
                _fmt(p.ttft_ms_p50, "ms"),
                _fmt(p.ttft_ms_p99, "ms"),
                _fmt(p.bad_traffic_share, "pct"),
                _fmt(p.fallbacks),
                _fmt(p.hedges),
            ]
            for pid, p in report.profiles.items()
        ],
    )
    out.append("")
    out += _table(
        ["listing", "seller", "behaviour", "share", "served", "seller $", "revenue", "status"],
        [
            [
                lid,
                x.seller,
                x.behaviour,
                _fmt(x.traffic_share, "pct"),
                _fmt(x.served),
                _fmt(x.seller_usd, "usd"),
                _fmt(report.seller_revenue_share.get(x.seller), "pct"),
                x.final_status,
            ]
            for lid, x in report.listings.items()
        ],
    )
    bad_rows = []
    for lid, x in report.listings.items():
        for e in x.episodes:
            bad_rows.append(
                [
                    lid,
                    f"{e.start_s:,.0f}-{e.end_s:,.0f} s",
                    _fmt(e.share_before, "pct"),
                    _fmt(e.share_during, "pct"),
                    _fmt(e.degraded_after_s, "s"),
                    _fmt(e.suspended_after_s, "s"),
                    _fmt(e.recovered_after_s, "s"),
                ]
            )
    if bad_rows:
        out.append("")
        out += _table(
            ["bad period", "span", "share before", "share during", "degraded", "suspended", "recovered"],
            bad_rows,
        )
    audit_rows = [
        [
            lid,
            _fmt(x.audit.flagged_after_s, "s"),
            _fmt(x.audit.trades_to_flag),
            _fmt(x.audit.overbilled_share, "pct"),
            _fmt(x.audit.peers_overbilled_share, "pct"),
            _fmt(x.audit.review_flagged_trades),
        ]
        for lid, x in report.listings.items()
        if x.audit is not None
    ]
    if audit_rows:
        out.append("")
        out += _table(
            ["inflating", "flagged after", "trades", "billed over count", "peers", "receipts flagged"],
            audit_rows,
        )
    return "\n".join(out)
