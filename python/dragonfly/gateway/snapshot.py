"""The in-memory view the hot path reads: keys, routing profiles, listings (with their quality), and the
operator's strategy weights. Built whole from the database and swapped atomically on every
change-sequence bump, so a request never sees half an update."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from dragonfly.config import Settings
from dragonfly.domain import pricing
from dragonfly.domain.billing import tokenizer_exact
from dragonfly.native.tokens import EncodingName, encoding_for_model
from dragonfly.security.secretbox import SecretBox
from dragonfly.storage.ports import Executor
from dragonfly.storage.sql.repos import snapshot as rows
from dragonfly.storage.sql.repos import strategy_weights as weights_rows

log = logging.getLogger("dragonfly.gateway.snapshot")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    account_id: str
    budget_micros: int | None
    profile_id: str | None
    ip_allow: tuple[Network, ...]
    ip_deny: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    id: str
    account_id: str
    strategy: str
    config: dict[str, Any]
    # Read from `config` once, when the snapshot is built (every request reads them).
    fallback_attempts: int = field(init=False)
    retry_on: frozenset[str] = field(init=False)
    # When to start a second listing beside a first that has not answered (None = no hedging).
    hedge_after_ms: int | None = field(init=False)

    def __post_init__(self) -> None:
        fb = self.config.get("fallback") or {}
        attempts = 1 if fb.get("enabled", True) is False else max(1, min(5, int(fb.get("max_attempts", 3))))
        retry_on = frozenset(fb.get("retry_on") or ("429", "5xx", "timeout", "connect_error"))
        h = self.config.get("hedge") or {}
        after = h.get("after_ms")
        hedge = int(after) if h.get("enabled") and after is not None else None
        object.__setattr__(self, "fallback_attempts", attempts)
        object.__setattr__(self, "retry_on", retry_on)
        object.__setattr__(self, "hedge_after_ms", hedge)


@dataclass(frozen=True, slots=True)
class ListingInfo:
    id: str
    seller_id: str
    model: str
    upstream_model: str
    kind: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)
    input_price: int
    output_price: int
    cached_input_price: int | None
    rpm_cap: int | None
    concurrency_cap: int | None
    context_length: int | None
    status: str
    contract_status: str
    encoding: str | None = None  # declared tokenizer for local counts; None = derive from the model name
    # What local counts use: the declared encoding, else the upstream model's (o200k_base when unknown).
    count_encoding: EncodingName = "o200k_base"
    # Quality sources (domain/quality.py): the probe score (None before any probe run), the operator's
    # override (None = computed).
    probe_quality: float | None = None
    quality_override: float | None = None
    # The latest passed admission or re-probe's time to first token, ms (None: none recorded): the
    # ranking's first latency sample of a listing it has no live traffic for yet.
    probe_ttft_ms: int | None = None
    # What input_price is per: `token`, or `character` (speech listings only; docs/seller.md).
    price_unit: str = "token"
    # The seller's payout floor per 1M units (None: none), and why the listing's price keeps it from
    # being routed (domain/pricing.py `exclusion`: a multiplier listing without a reference price, or a
    # payout after the platform fee below the floor; None: it does not). Set at snapshot load.
    payout_floor: int | None = None
    pricing_exclusion: str | None = None
    # Whether `count_encoding` is the seller's own tokenizer (domain/billing.py `tokenizer_exact`): what
    # billing caps a report at. Derived from the fields above once, not per trade.
    count_exact: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        exact = tokenizer_exact(
            declared=self.encoding,
            count_encoding=self.count_encoding,
            upstream_model=self.upstream_model,
            upstream_mapped=encoding_for_model(self.upstream_model),
            market_mapped=encoding_for_model(self.model),
        )
        object.__setattr__(self, "count_exact", exact)

    @property
    def routable(self) -> bool:
        return (
            self.status == "active"
            and self.contract_status in ("active", "degraded")
            and self.pricing_exclusion is None
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    keys_by_hash: dict[str, KeyInfo]
    profiles: dict[str, ProfileInfo]
    default_profile: dict[str, str]  # account id -> its default profile id
    listings_by_model: dict[str, tuple[ListingInfo, ...]]
    listings_by_id: dict[str, ListingInfo]
    # The operator's weights per strategy (`/api/admin/routing/weights`); absent = the native defaults.
    strategy_weights: dict[str, dict[str, float]] = field(default_factory=dict)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _networks(raw: str | None) -> tuple[Network, ...]:
    out = []
    for cidr in orjson.loads(raw or "[]"):
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            log.warning("ignoring invalid CIDR in a key's IP list")
    return tuple(out)


async def load_snapshot(
    db: Executor, box: SecretBox, seq: int, now_ms: int, *, fee_bps: int = Settings.platform_fee_bps
) -> Snapshot:
    """`fee_bps`: the platform fee the data plane settles with, against which payout floors are held."""
    keys = {}
    for r in await rows.live_keys(db, now_ms):
        cents = r["monthly_budget_cents"]
        keys[r["key_hash"]] = KeyInfo(
            id=r["id"],
            account_id=r["account_id"],
            budget_micros=None if cents is None else int(cents) * 10_000,
            profile_id=r["routing_profile_id"],
            ip_allow=_networks(r["ip_whitelist"]),
            ip_deny=_networks(r["ip_blacklist"]),
        )
    profiles: dict[str, ProfileInfo] = {}
    defaults: dict[str, str] = {}
    for r in await rows.live_profiles(db):
        profiles[r["id"]] = ProfileInfo(
            r["id"], r["account_id"], r["strategy"], orjson.loads(r["config"] or "{}")
        )
        if r["is_default"]:
            defaults[r["account_id"]] = r["id"]
    by_model: dict[str, list[ListingInfo]] = {}
    by_id: dict[str, ListingInfo] = {}
    for r in await rows.routable_listings(db):
        try:
            api_key = box.open(r["key_ciphertext"], r["pool_key_id"])
        except ValueError:
            log.error("listing %s: provider key does not decrypt; skipped", r["id"])
            continue
        cached = None if r["cached_input_price"] is None else int(r["cached_input_price"])
        prices = pricing.Prices(int(r["input_price"]), int(r["output_price"]), cached)
        floor = None if r["payout_floor"] is None else int(r["payout_floor"])
        listing = ListingInfo(
            id=r["id"],
            seller_id=r["account_id"],
            model=r["model"],
            upstream_model=r["upstream_model"],
            kind=r["kind"],
            provider=r["provider"],
            base_url=r["base_url"].rstrip("/"),
            api_key=api_key,
            input_price=prices.input,
            output_price=prices.output,
            cached_input_price=cached,
            rpm_cap=r["rpm_cap"],
            concurrency_cap=r["concurrency_cap"],
            context_length=r["context_length"],
            status=r["status"] if r["pool_status"] == "active" else "paused",
            contract_status=r["contract_status"],
            encoding=r["encoding"],
            count_encoding=r["encoding"] or encoding_for_model(r["upstream_model"])[0],
            probe_quality=_float_or_none(r["probe_quality"]),
            quality_override=_float_or_none(r["quality_override"]),
            probe_ttft_ms=None if r["probe_ttft_ms"] is None else int(r["probe_ttft_ms"]),
            price_unit=r["price_unit"],
            payout_floor=floor,
            pricing_exclusion=pricing.exclusion(
                r["kind"],
                prices,
                reference_missing=bool(r["reference_missing"]),
                payout_floor=floor,
                fee_bps=fee_bps,
            ),
        )
        by_model.setdefault(listing.model, []).append(listing)
        by_id[listing.id] = listing
    return Snapshot(
        seq=seq,
        keys_by_hash=keys,
        profiles=profiles,
        default_profile=defaults,
        listings_by_model={m: tuple(v) for m, v in by_model.items()},
        listings_by_id=by_id,
        strategy_weights=await weights_rows.stored(db),
    )
