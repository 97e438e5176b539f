"""Candidate listings for a request: the native `Market` ranks, this module feeds it the snapshot.

The Market keeps live stats (TTFT, throughput, success EWMAs) across snapshot reloads: listings and
profiles are upserted and removed, never rebuilt from scratch.
"""

from __future__ import annotations

import logging
from typing import Any

from dragonfly.errors import ModelNotFound, NoListingMatchesProfile
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo, ProfileInfo, Snapshot
from dragonfly.native.market import STRATEGIES, Market, MarketError

BUILTIN_PREFIX = "builtin:"
log = logging.getLogger("dragonfly.gateway.routing")


def _int_or_none(value: Any) -> int | None:
    # Stored profile configs hold price ceilings as integer micro-USD per 1M tokens.
    return None if value is None else int(value)


class Router:
    def __init__(self) -> None:
        self.market = Market()
        self._listing_ids: set[str] = set()
        self._profile_ids: set[str] = set()
        for strategy in STRATEGIES:
            if strategy != "custom":
                self.market.set_profile(BUILTIN_PREFIX + strategy, strategy=strategy)

    def load(self, snap: Snapshot) -> None:
        for listing in snap.listings_by_id.values():
            self.market.upsert_listing(
                listing.id,
                model=listing.model,
                provider=listing.provider,
                seller_id=listing.seller_id,
                input_price=listing.input_price,
                output_price=listing.output_price,
                rpm_cap=listing.rpm_cap,
                concurrency_cap=listing.concurrency_cap,
                status=listing.status,
                contract_status=listing.contract_status,
            )
        for gone in self._listing_ids - snap.listings_by_id.keys():
            self.market.remove_listing(gone)
        self._listing_ids = set(snap.listings_by_id)
        for profile in snap.profiles.values():
            self._register_profile(profile)
        for gone in self._profile_ids - snap.profiles.keys():
            self.market.remove_profile(gone)
        self._profile_ids = set(snap.profiles)

    def _register_profile(self, p: ProfileInfo) -> None:
        try:
            self._set_profile(p, p.strategy)
        except MarketError as exc:
            # An unusable profile (e.g. custom without weights) routes as balanced with its filters.
            log.warning("profile %s routes as balanced: %s", p.id, exc)
            self._set_profile(p, "balanced")

    def _set_profile(self, p: ProfileInfo, strategy: str) -> None:
        c = p.config
        self.market.set_profile(
            p.id,
            strategy=strategy,
            weights=c.get("weights") if strategy == p.strategy else None,
            providers_allow=c.get("providers_allow"),
            providers_deny=c.get("providers_deny"),
            sellers_deny=c.get("sellers_deny"),
            max_input_price=_int_or_none(c.get("max_input_price")),
            max_output_price=_int_or_none(c.get("max_output_price")),
            max_ttft_ms=c.get("max_ttft_ms"),
            min_throughput_tps=c.get("min_throughput_tps"),
        )

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
        ids = self.market.rank(model, profile.id, now_ms, seed, limit)
        out = [snap.listings_by_id[i] for i in ids if i in snap.listings_by_id]
        out = [x for x in out if x.kind == kind]
        if not out:
            raise NoListingMatchesProfile(
                f"No active listing for `{model}` satisfies the routing profile.",
                headers={"x-should-retry": "false"},
            )
        return out
