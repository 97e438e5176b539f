"""The per-request routing override: a top-level `dragonfly` object that can only NARROW the key's
routing profile (docs/buyer.md): `{profile_id?, providers_allow?, max_output_price_per_mtok?}`.

A named `profile_id` (one of the account's own profiles) decides how candidates are RANKED (strategy and
weights), but a listing must pass the filters of BOTH that profile and the key's own one, and the fallback
is the stricter of the two: a key bound to a narrow profile cannot be widened by naming a wider one."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from dragonfly.domain.money import parse_price
from dragonfly.errors import InvalidRequest, NoListingMatchesProfile
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo, Snapshot
from dragonfly.native.market import Market
from dragonfly.services.providers import check_ids

_FIELDS = frozenset({"profile_id", "providers_allow", "max_output_price_per_mtok"})


@dataclass(frozen=True, slots=True)
class Override:
    profile_id: str | None = None
    providers_allow: frozenset[str] | None = None
    max_output_price: int | None = None


def parse_override(raw: bytes | None) -> Override | None:
    if raw is None:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("`dragonfly` must be an object", param="dragonfly") from None
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidRequest("`dragonfly` must be an object", param="dragonfly")
    unknown = set(obj) - _FIELDS
    if unknown:
        raise InvalidRequest(f"unknown field dragonfly.{sorted(unknown)[0]}", param="dragonfly")
    profile_id = obj.get("profile_id")
    if profile_id is not None and not isinstance(profile_id, str):
        raise InvalidRequest("dragonfly.profile_id must be a string", param="dragonfly.profile_id")
    allow = obj.get("providers_allow")
    if allow is not None and (not isinstance(allow, list) or not all(isinstance(p, str) for p in allow)):
        raise InvalidRequest(
            "dragonfly.providers_allow must be a list of strings", param="dragonfly.providers_allow"
        )
    if allow:
        try:
            check_ids(allow)
        except ValueError as exc:
            raise InvalidRequest(
                f"dragonfly.providers_allow: {exc}", param="dragonfly.providers_allow"
            ) from None
    price = obj.get("max_output_price_per_mtok")
    ceiling = None
    if price is not None:
        try:
            ceiling = parse_price(price)
        except ValueError as exc:
            raise InvalidRequest(f"dragonfly.max_output_price_per_mtok: {exc}", param="dragonfly") from None
    return Override(profile_id, frozenset(allow) if allow is not None else None, ceiling)


def override_profile(
    snap: Snapshot, account_id: str, default: ProfileInfo, ov: Override | None
) -> ProfileInfo:
    if ov is None or ov.profile_id is None:
        return default
    profile = snap.profiles.get(ov.profile_id)
    if profile is None or profile.account_id != account_id:
        raise InvalidRequest(
            "dragonfly.profile_id is not one of your routing profiles", param="dragonfly.profile_id"
        )
    return profile


def within_key_profile(
    market: Market,
    key_profile: ProfileInfo,
    snap: Snapshot,
    model: str,
    now_ms: int,
    seed: int,
    candidates: list[ListingInfo],
) -> list[ListingInfo]:
    """Keep the candidates (ranked by a named profile) that the key's own profile admits too."""
    everything = len(snap.listings_by_model.get(model, ()))
    admitted = set(market.rank(model, key_profile.id, now_ms, seed, everything))
    return [c for c in candidates if c.id in admitted]


def stricter_fallback(a: ProfileInfo, b: ProfileInfo) -> tuple[int, frozenset[str]]:
    """Fewest attempts, and only the failures both profiles retry on."""
    return min(a.fallback_attempts, b.fallback_attempts), a.retry_on & b.retry_on


def narrow(candidates: list[ListingInfo], ov: Override | None, model: str) -> list[ListingInfo]:
    if ov is None:
        return candidates
    out = candidates
    if ov.providers_allow is not None:
        out = [c for c in out if c.provider in ov.providers_allow]
    if ov.max_output_price is not None:
        out = [c for c in out if c.output_price <= ov.max_output_price]
    if not out:
        raise NoListingMatchesProfile(
            f"No active listing for `{model}` satisfies the request's routing override.",
            headers={"x-should-retry": "false"},
        )
    return out
