"""Candidate listings for a request: the native `Market` ranks, this module feeds it the snapshot.

The Market keeps live stats (TTFT, throughput, success EWMAs) across snapshot reloads: listings and
profiles are upserted and removed, never rebuilt from scratch. Each load applies, in this order, the
operator's strategy weights (`GET/PUT /api/admin/routing/weights`), the listings with their quality, and
the profiles — so the first ranking after a load already uses all three. A listing new to the market
starts with its latest passed probe's time to first token as its first latency sample.

A listing whose price keeps it from being routed (`ListingInfo.pricing_exclusion`, domain/pricing.py: a
multiplier listing without a reference price, a payout below the seller's floor) is given to the market as
`paused`, so it is never ranked, and `explain` names the pricing reason instead of `status_paused` (the
routing activity the operator reads is this explanation). Both are static: a request refused for them
carries `x-should-retry: false`.

A profile the market cannot register never reaches here through the API (it registers every profile in
a throwaway market before storing it, with the same `register_profile`). Should one still arrive (a row
written around the API, an older version's data), it is logged as an error and EXCLUDED: registered to
match no listing, so requests with it get 503 `no_listing_matches_profile` — never silently routed under
another strategy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from dragonfly.domain.quality import market_quality
from dragonfly.domain.trade import AttemptPlan, context_refusal, tokens_needed, within_context
from dragonfly.errors import ModelNotFound, NoListingMatchesProfile
from dragonfly.gateway.override import Override, narrow, stricter_fallback, within_key_profile
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo, ProfileInfo, Snapshot
from dragonfly.native.market import (
    STRATEGIES,
    Market,
    MarketError,
    default_strategy_weights,
    register_profile,
)

BUILTIN_PREFIX = "builtin:"
# Exclusions that live traffic can lift (the native core's reason codes): a refusal they cause is worth
# retrying, so it does not carry `x-should-retry: false`.
_DYNAMIC_EXCLUSIONS = frozenset({"capacity_full", "ttft_above_target", "throughput_below_target"})
log = logging.getLogger("dragonfly.gateway.routing")


class Router:
    def __init__(self) -> None:
        self.market = Market()
        self._listing_ids: set[str] = set()
        self._profile_ids: set[str] = set()
        self._excluded: set[str] = set()  # profiles the market refused: they match no listing
        self._priced_out: dict[str, str] = {}  # listing id -> why its price keeps it from being routed
        self._defaults = default_strategy_weights()
        self._weights = {s: dict(w) for s, w in self._defaults.items()}  # what the market holds now
        for strategy in STRATEGIES:
            if strategy != "custom":
                self.market.set_profile(BUILTIN_PREFIX + strategy, strategy=strategy)

    def load(self, snap: Snapshot) -> None:
        self._load_weights(snap.strategy_weights)
        priced_out: dict[str, str] = {}
        for listing in snap.listings_by_id.values():
            quality, blend = market_quality(listing.probe_quality, listing.quality_override)
            status = listing.status
            if status == "active" and listing.pricing_exclusion is not None:
                priced_out[listing.id] = listing.pricing_exclusion
                status = "paused"
            self.market.upsert_listing(
                listing.id,
                model=listing.model,
                provider=listing.provider,
                seller_id=listing.seller_id,
                input_price=listing.input_price,
                output_price=listing.output_price,
                rpm_cap=listing.rpm_cap,
                concurrency_cap=listing.concurrency_cap,
                status=status,
                contract_status=listing.contract_status,
                quality=quality,
                blend_live_success=blend,
            )
            if listing.id not in self._listing_ids and listing.probe_ttft_ms is not None:
                # New to the market: its passed probe's TTFT is its first latency sample. Without it the
                # ranking gives the listing the average of the others, so a listing faster than that
                # average but not the fastest seen never ranks first for a latency-weighted profile,
                # never gets traffic and so never a live sample (found by the market simulator).
                self.market.record_result(
                    listing.id, True, float(listing.probe_ttft_ms), None, int(time.time() * 1000)
                )
        for gone in self._listing_ids - snap.listings_by_id.keys():
            self.market.remove_listing(gone)
        self._listing_ids = set(snap.listings_by_id)
        self._priced_out = priced_out
        for profile in snap.profiles.values():
            self._register_profile(profile)
        for gone in self._profile_ids - snap.profiles.keys():
            self.market.remove_profile(gone)
            self._excluded.discard(gone)
        self._profile_ids = set(snap.profiles)

    def _load_weights(self, stored: dict[str, dict[str, float]]) -> None:
        """The operator's weights per strategy (the native defaults where none are stored)."""
        for strategy, default in self._defaults.items():
            wanted = stored.get(strategy) or default
            if wanted == self._weights.get(strategy):
                continue
            try:
                self.market.set_strategy_weights(strategy, wanted)
            except MarketError as exc:
                log.error("stored %s weights refused by the market (%s); using the defaults", strategy, exc)
                self.market.set_strategy_weights(strategy, default)
                wanted = default
            self._weights[strategy] = dict(wanted)

    def _register_profile(self, p: ProfileInfo) -> None:
        try:
            register_profile(self.market, p.id, p.strategy, p.config)
        except MarketError as exc:
            log.error(
                "routing profile %s cannot be registered (%s): it is excluded, its requests get 503",
                p.id,
                exc,
            )
            self.market.set_profile(p.id, strategy="balanced", providers_allow=[])  # matches nothing
            self._excluded.add(p.id)
        else:
            self._excluded.discard(p.id)

    @staticmethod
    def profile_for(snap: Snapshot, key: KeyInfo) -> ProfileInfo:
        pid = key.profile_id or snap.default_profile.get(key.account_id)
        if pid and pid in snap.profiles:
            return snap.profiles[pid]
        return ProfileInfo(BUILTIN_PREFIX + "balanced", key.account_id, "balanced", {})

    def candidates(
        self, snap: Snapshot, profile: ProfileInfo, model: str, kind: str, now_ms: int, seed: int, limit: int
    ) -> list[ListingInfo]:
        listed = snap.listings_by_model.get(model)
        if not listed or not any(x.kind == kind and x.routable for x in listed):
            raise ModelNotFound(
                f"The model `{model}` does not exist or has no active listing.", param="model"
            )
        if profile.id in self._excluded:
            raise NoListingMatchesProfile(
                f"The routing profile `{profile.id}` is invalid and matches no listing; update it through "
                "/api/routing/profiles.",
                headers={"x-should-retry": "false"},
            )
        ids = self.market.rank(model, profile.id, now_ms, seed, limit)
        out = [snap.listings_by_id[i] for i in ids if i in snap.listings_by_id]
        out = [x for x in out if x.kind == kind]
        if not out:
            static = self.exclusion_is_static(model, profile.id, now_ms, seed)
            raise NoListingMatchesProfile(
                f"No active listing for `{model}` satisfies the routing profile.",
                headers={"x-should-retry": "false"} if static else {"retry-after": "1"},
            )
        return out

    def exclusion_is_static(self, model: str, profile_id: str, now_ms: int, seed: int) -> bool:
        """Whether a request refused for its profile would be refused again as it is: true unless some
        listing was excluded only for a live measurement or a full concurrency cap, which can change."""
        rows = self.explain(model, profile_id, now_ms, seed)
        return not any(row.get("excluded") in _DYNAMIC_EXCLUSIONS for row in rows)

    def explain(self, model: str, profile_id: str, now_ms: int, seed: int) -> list[dict[str, Any]]:
        """`Market.explain`, with a listing held back for its price excluded for that reason (e.g.
        `payout_below_floor`) rather than the `status_paused` the market was given."""
        rows: list[dict[str, Any]] = self.market.explain(model, profile_id, now_ms, seed)
        if self._priced_out:
            for row in rows:
                reason = self._priced_out.get(row["listing_id"])
                if reason is not None and row.get("excluded") == "status_paused":
                    row["excluded"] = reason
        return rows


def plan_route(
    router: Router,
    snap: Snapshot,
    *,
    kind: str,
    model: str,
    prompt_tokens: int,
    max_tokens: int | None,
    key_profile: ProfileInfo,
    profile: ProfileInfo,
    override: Override | None,
    now_ms: int,
    seed: int,
    observe_rank: Callable[[float], None] | None = None,
) -> tuple[list[ListingInfo], AttemptPlan]:
    """The listings a request may go to, best first, and its fallback plan (domain/trade.py): the data
    plane's routing decision for one request (gateway/chat.py), and the market simulator's
    (dragonfly/simulate). `max_tokens` is the buyer's (None for embeddings); `observe_rank` is given the
    native ranking's duration in seconds."""
    needed = tokens_needed(prompt_tokens, max_tokens)
    listed = [x for x in snap.listings_by_model.get(model, ()) if x.kind == kind and x.routable]
    if listed and not within_context(listed, needed):
        # Refused before any seller sees it: no listing of this model could take the prompt.
        largest = max(x.context_length or 0 for x in listed)
        raise context_refusal(model, prompt_tokens, max_tokens, largest)
    attempts, retry_on = profile.fallback_attempts, profile.retry_on
    # A short list is enough to fall back on; a filtering override sees the whole ranking.
    limit = attempts + 4 if override is None else len(listed) + 1
    if observe_rank is None:
        candidates = router.candidates(snap, profile, model, kind, now_ms, seed, limit)
    else:
        ranking = time.perf_counter_ns()
        candidates = router.candidates(snap, profile, model, kind, now_ms, seed, limit)
        observe_rank((time.perf_counter_ns() - ranking) / 1e9)
    if profile is not key_profile:
        candidates = within_key_profile(router.market, key_profile, snap, model, now_ms, seed, candidates)
        attempts, retry_on = stricter_fallback(profile, key_profile)
    candidates = narrow(candidates, override, model)
    fitting = within_context(candidates, needed)
    if not fitting:
        raise NoListingMatchesProfile(
            f"No listing for `{model}` that satisfies the routing profile has a context window "
            f"of {needed} tokens.",
            headers={"x-should-retry": "false"},
        )
    return fitting, AttemptPlan(attempts, retry_on)
