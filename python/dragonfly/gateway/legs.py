"""The pieces of one trade's route through the market: a `Leg` is one admitted attempt at one listing
(its own hold), a `Route` is what is left to try. Hedging races two legs; a continued stream is served by
several legs in turn (gateway/chat.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from dragonfly.domain.trade import AttemptPlan
from dragonfly.gateway.snapshot import ListingInfo


@dataclass(slots=True)
class Leg:
    """An attempt admitted at `listing`. Its hold is reserved under `hold_id` (the request id for the
    first leg, `<request id>.<n>` after it), so two legs in flight at once never share a hold."""

    listing: ListingInfo
    pre: Any  # the request pre-parsed with this listing's tokenizer (PreParsed)
    hold: int
    hold_id: str
    t0: int = 0  # perf_counter_ns when the request was sent to the seller
    first: bytes = b""  # the first body piece, read while racing (hedged streams)
    counted_before: int = 0  # completion tokens the buyer had received before this leg (continuation)


@dataclass(slots=True)
class Route:
    """The ranking not tried yet, the fallback plan, and the body the next leg is sent."""

    candidates: Iterator[ListingInfo]
    plan: AttemptPlan
    body: bytes
    pre: Any  # the last pre-parse (re-parsed when a listing counts with another tokenizer)
    now_ms: int
    hedge_after_ms: int | None
    legs: int = 0

    def hold_id(self, request_id: str) -> str:
        return request_id if self.legs == 0 else f"{request_id}.{self.legs}"


def continuation_body(body: bytes, prefix: str, completion_left: int | None) -> bytes:
    """The request that continues a broken stream elsewhere: the buyer's messages, then what the buyer
    has received so far as an assistant message, and what is left of max_tokens."""
    req = orjson.loads(body)
    if prefix:
        req["messages"] = [*req.get("messages", []), {"role": "assistant", "content": prefix}]
    if completion_left is not None:
        for name in ("max_completion_tokens", "max_tokens"):
            if req.get(name) is not None:
                req[name] = completion_left
    return orjson.dumps(req)
