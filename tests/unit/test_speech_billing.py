"""Speech billing without I/O: the hold is exactly the input's cost at the listing (per character or per
counted token), settlement bills the same unit and never above the hold, and the trade row says which
unit priced it. Also the request check that makes a speech request billable."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from support.listings import listing_info

from dragonfly.errors import InvalidRequest
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo
from dragonfly.gateway.speech import Speech, input_characters
from dragonfly.gateway.trade import TradeState, Usage

FEE_BPS, RESERVE_BPS = 1000, 500
KEY = KeyInfo("key-1", "buyer-1", None, None, (), ())


def listing(price_unit: str, input_price: int = 15_000_000) -> ListingInfo:
    return listing_info(
        f"l-{price_unit}",
        model="demo/tts-1",
        upstream_model="tts-1",
        kind="speech",
        base_url="https://x.example/v1",
        input_price=input_price,
        output_price=99_000_000,  # never billed for speech: there are no completion tokens
        price_unit=price_unit,
    )


def speech_handler() -> Speech:
    rt: Any = SimpleNamespace(settings=SimpleNamespace(failpoint=None))
    return Speech(rt)


def trade(characters: int) -> TradeState:
    return TradeState(request_id="t-1", key=KEY, model="demo/tts-1", streamed=False, characters=characters)


@pytest.mark.parametrize(
    ("unit", "billed", "charge"),
    [("character", 40, 40 * 15), ("token", 9, 9 * 15)],
)
def test_hold_and_cost_are_the_input_at_the_listing_unit(unit: str, billed: int, charge: int) -> None:
    t = trade(characters=40)
    t.listing = listing(unit)
    hold = speech_handler()._hold(t, t.listing, SimpleNamespace(prompt_tokens=9))
    assert (t.hold_prompt_tokens, t.hold_completion_tokens, hold) == (billed, 0, charge)
    cost = t.cost(Usage(prompt=9, characters=40), FEE_BPS, RESERVE_BPS)
    assert cost.charge == hold == cost.payout + cost.reserve + cost.fee + cost.rounding
    row = t.row("completed", Usage(prompt=9, characters=40), cost, None)
    assert (row.price_unit, row.characters_prompt, row.tokens_prompt) == (unit, 40, 9)
    assert row.cost_micros == charge


def test_settlement_never_bills_past_the_hold_and_a_failure_bills_nothing() -> None:
    t = trade(characters=40)
    t.listing = listing("character")
    t.hold_prompt_tokens = 40
    assert t.cost(Usage(prompt=9, characters=400), FEE_BPS, RESERVE_BPS).charge == 40 * 15
    assert t.cost(Usage(), FEE_BPS, RESERVE_BPS).charge == 0


def test_a_chat_trade_is_unchanged_and_says_token() -> None:
    t = TradeState(request_id="t-2", key=KEY, model="m", streamed=False)
    t.listing = listing("token")
    t.hold_prompt_tokens, t.hold_completion_tokens = 100, 100
    usage = Usage(prompt=10, completion=5)
    row = t.row("completed", usage, t.cost(usage, FEE_BPS, RESERVE_BPS), None)
    assert (row.price_unit, row.characters_prompt) == ("token", None)
    assert row.cost_micros == 10 * 15 + 5 * 99
    t.listing = None  # refused before any listing: nothing priced it
    assert t.row("failed", None, None, "x").price_unit is None


@pytest.mark.parametrize(
    "body",
    [b'{"model": "m", "voice": "alloy"}', b'{"model": "m", "input": ""}', b'{"input": ["a"]}', b"[1]"],
)
def test_a_speech_request_needs_a_text_input(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        input_characters(body)


def test_characters_are_code_points() -> None:
    assert input_characters('{"input": "été 🎧"}'.encode()) == 5
