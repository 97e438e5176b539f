"""The per-request `dragonfly` override narrows routing and never widens it."""

from __future__ import annotations

import pytest

from dragonfly.errors import InvalidRequest, NoListingMatchesProfile
from dragonfly.gateway.override import narrow, override_profile, parse_override
from dragonfly.gateway.snapshot import ListingInfo, ProfileInfo, Snapshot


def listing(lid: str, provider: str, out_price: int) -> ListingInfo:
    return ListingInfo(
        id=lid,
        seller_id="s",
        model="m",
        upstream_model="m",
        kind="chat",
        provider=provider,
        base_url="https://x.example/v1",
        api_key="k",
        input_price=1,
        output_price=out_price,
        cached_input_price=None,
        rpm_cap=None,
        concurrency_cap=None,
        context_length=None,
        status="active",
        contract_status="active",
    )


def snapshot(*profiles: ProfileInfo) -> Snapshot:
    return Snapshot(1, {}, {p.id: p for p in profiles}, {}, {}, {})


CANDIDATES = [
    listing("a", "groq", 500_000),
    listing("b", "openai", 2_000_000),
    listing("c", "groq", 3_000_000),
]


def test_providers_and_price_ceiling_only_remove_candidates() -> None:
    ov = parse_override(b'{"providers_allow": ["groq"], "max_output_price_per_mtok": "1.0"}')
    assert [c.id for c in narrow(CANDIDATES, ov, "m")] == ["a"]
    assert narrow(CANDIDATES, None, "m") == CANDIDATES


def test_nothing_left_is_no_listing_matches_profile() -> None:
    ov = parse_override(b'{"max_output_price_per_mtok": "0.1"}')
    with pytest.raises(NoListingMatchesProfile) as exc:
        narrow(CANDIDATES, ov, "m")
    assert exc.value.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "raw",
    [
        b"[1]",
        b'{"unknown": 1}',
        b'{"providers_allow": "groq"}',
        b'{"max_output_price_per_mtok": "-1"}',
        b'{"profile_id": 5}',
    ],
)
def test_malformed_override_is_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_override(raw)


def test_profile_id_must_belong_to_the_buyer() -> None:
    mine = ProfileInfo("p1", "acct", "cost_first", {})
    theirs = ProfileInfo("p2", "other", "cost_first", {})
    default = ProfileInfo("d", "acct", "balanced", {})
    snap = snapshot(mine, theirs)
    assert override_profile(snap, "acct", default, parse_override(b'{"profile_id": "p1"}')) is mine
    with pytest.raises(InvalidRequest):
        override_profile(snap, "acct", default, parse_override(b'{"profile_id": "p2"}'))
    assert override_profile(snap, "acct", default, None) is default
