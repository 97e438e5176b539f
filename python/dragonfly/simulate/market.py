"""The simulated market as the gateway sees it: the scenario's listings and profiles turned into the
data plane's own snapshot (`gateway/snapshot.py` ListingInfo, ProfileInfo, KeyInfo, Snapshot), loaded
into the data plane's own `Router` (gateway/routing.py: the native `Market`), and the in-process state
store (storage/state/memory.py) that admits each attempt (listing rpm and concurrency caps, holds).

Every change the control plane would write and the data plane would reload — a health transition, a
re-probe's quality, a re-price — rebuilds the snapshot and loads it into the router, as a change-sequence
bump does in the gateway."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dragonfly.domain import pricing
from dragonfly.domain.calendar import month_of
from dragonfly.domain.quality import PROBE_WINDOW, probe_quality
from dragonfly.gateway.routing import Router
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo, ProfileInfo, Snapshot
from dragonfly.native.tokens import EncodingName, encoding_for_model
from dragonfly.simulate.events import EPOCH_MS
from dragonfly.simulate.scenario import Listing, Model, Scenario
from dragonfly.simulate.sync import run_sync
from dragonfly.storage.state.memory import MemoryStateStore
from dragonfly.storage.state.ports import AccountSeed

__all__ = ["SimListing", "SimMarket"]

BUYER_BALANCE_MICROS = 10**15  # the buyers never run out of money: the simulation is about routing


@dataclass(slots=True)
class SimListing:
    spec: Listing
    model: Model
    prices: pricing.Prices
    reference_missing: bool = False
    contract_status: str = "active"  # the admission probe passed
    # The re-probe schedule (services/health.py, listing_health): ejections so far, when the last began,
    # when the next re-probe is due; `schedule` invalidates a re-probe event a later write replaced.
    ejections: int = 0
    last_ejected_at: int | None = None
    reprobe_at: int | None = None
    schedule: int = 0
    probe_runs: deque[list[dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=PROBE_WINDOW))
    probe_quality: float | None = None
    info: ListingInfo | None = None

    @property
    def id(self) -> str:
        return self.spec.id


class SimMarket:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.fee_bps = scenario.gateway.platform_fee_bps
        self.reserve_bps = scenario.gateway.reserve_bps
        models = {m.id: m for m in scenario.models}
        self.listings: dict[str, SimListing] = {}
        for spec in scenario.listings:
            x = SimListing(spec, models[spec.model], pricing.Prices(spec.input_price, spec.output_price))
            x.probe_quality = spec.quality
            self.listings[spec.id] = x
        self.profiles = [
            ProfileInfo(p.id, f"buyer-{p.id}", p.strategy, p.config()) for p in scenario.profiles
        ]
        self.keys = [KeyInfo(f"key-{p.id}", p.account_id, None, p.id, (), ()) for p in self.profiles]
        self.weights = {s: w.model_dump() for s, w in scenario.weights.items()}
        self.router = Router()
        self.state = MemoryStateStore()
        month = month_of(EPOCH_MS)
        for key in self.keys:
            run_sync(
                self.state.seed(AccountSeed(key.account_id, BUYER_BALANCE_MICROS, month, {key.id: 0}), 0)
            )
        self.seq = 0
        self.snapshot = self._build()

    # -- the snapshot ---------------------------------------------------------------------------------

    def _info(self, x: SimListing) -> ListingInfo:
        spec, model = x.spec, x.model
        upstream = spec.model.rsplit("/", 1)[-1]
        # `exact`: the listing declares the tokenizer Dragonfly counts with (billing caps reports);
        # `estimated`: none declared, the upstream model's is used (o200k_base when unknown).
        declared: EncodingName | None = "o200k_base" if model.tokenizer == "exact" else None
        return ListingInfo(
            id=spec.id,
            seller_id=spec.seller,
            model=spec.model,
            upstream_model=upstream,
            kind="chat",
            provider=spec.provider,
            base_url=f"sim://{spec.id}",
            api_key="",
            input_price=x.prices.input,
            output_price=x.prices.output,
            cached_input_price=x.prices.cached_input,
            rpm_cap=spec.rpm_cap,
            concurrency_cap=spec.concurrency_cap,
            context_length=model.context_length,
            status="active",
            contract_status=x.contract_status,
            encoding=declared,
            count_encoding=declared or encoding_for_model(upstream)[0],
            probe_quality=x.probe_quality,
            quality_override=spec.quality_override,
            price_unit="token",
            payout_floor=spec.payout_floor,
            pricing_exclusion=pricing.exclusion(
                "chat",
                x.prices,
                reference_missing=x.reference_missing,
                payout_floor=spec.payout_floor,
                fee_bps=self.fee_bps,
            ),
        )

    def _build(self) -> Snapshot:
        """A fresh snapshot of every listing, loaded into the router (gateway/runtime.py does the same
        on every change-sequence bump)."""
        self.seq += 1
        by_id: dict[str, ListingInfo] = {}
        by_model: dict[str, list[ListingInfo]] = {}
        for x in self.listings.values():
            info = x.info = self._info(x)
            by_id[info.id] = info
            by_model.setdefault(info.model, []).append(info)
        snap = Snapshot(
            seq=self.seq,
            keys_by_hash={},
            profiles={p.id: p for p in self.profiles},
            default_profile={},
            listings_by_model={m: tuple(v) for m, v in by_model.items()},
            listings_by_id=by_id,
            strategy_weights=self.weights,
        )
        self.router.load(snap)
        return snap

    def reload(self) -> None:
        self.snapshot = self._build()

    # -- what health and pricing change ----------------------------------------------------------------

    def record_probe(self, x: SimListing, passed_checks: int, checks: int) -> None:
        """A probe run's checks (a run stops at its first failure); the probe score follows
        (domain/quality.py), as services/listing_quality.py recomputes it with every recorded run."""
        run = [{"passed": i < passed_checks} for i in range(min(checks, passed_checks + 1))]
        x.probe_runs.append(run)
        x.probe_quality = probe_quality(x.probe_runs)

    def model_counts(self, model: str) -> tuple[int, int]:
        """(the model's listings routable but for health, how many of those are ejected), as
        storage/sql/repos/health.py `model_counts` counts them for the ejection share."""
        routable = ejected = 0
        for x in self.listings.values():
            if x.spec.model == model and x.contract_status in ("active", "degraded", "suspended"):
                routable += 1
                ejected += x.contract_status == "suspended"
        return routable, ejected
