"""Everything one inference request accumulates on its way through the gateway, and how it becomes a
trade row, a journal and a state-store settlement."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sized
from dataclasses import dataclass, field
from typing import Any

import orjson

from dragonfly.domain.billing import Audit, Counted, Reported, bill
from dragonfly.domain.ledger import Posting, trade_postings
from dragonfly.domain.money import TradeCost, trade_cost
from dragonfly.domain.trade_record import TradeRecord
from dragonfly.gateway.snapshot import KeyInfo, ListingInfo
from dragonfly.ids import now_ms
from dragonfly.native.tokens import PreParsed

# The usage audit's review threshold and the billing slack live in domain/billing.py.


@dataclass(slots=True)
class Usage:
    """What a trade bills (`prompt`, `completion`, `cached`: domain/billing.py), what the seller reported
    (`native_*`) and what Dragonfly counted (`counted_*`), and the audit verdict."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    native_prompt: int | None = None
    native_completion: int | None = None
    counted_completion: int | None = None
    characters: int | None = None  # input characters (speech): what a per-character listing bills
    counted_prompt: int | None = None
    audit: Audit = "unverifiable"  # ok | flagged | unverifiable (domain/billing.py)


def usage_from(
    upstream: Mapping[str, object] | None,
    prompt_counted: int,
    completion_counted: int,
    listing: ListingInfo | None = None,
    request: PreParsed | None = None,
    tool_calls: Sized = (),
) -> Usage:
    """The billed usage of a chat or embeddings trade (domain/billing.py `bill`): the seller's report,
    capped at Dragonfly's own count + slack for each kind that count is exact for, else as reported;
    Dragonfly's count when the seller reported none.

    `listing` (the one that answered) and `request` (the pre-parse the prompt was counted from) say
    whether the counts are exact; without both, nothing is capped. `tool_calls` are the answer's (their
    framing tokens are not counted). Reasoning and cached tokens are read from `upstream`."""
    reported = None
    if upstream:
        p, c = upstream.get("prompt_tokens"), upstream.get("completion_tokens")
        cached, reasoning = upstream.get("cached_tokens"), upstream.get("reasoning_tokens")
        reported = Reported(
            prompt=p if isinstance(p, int) and p >= 0 else None,
            completion=c if isinstance(c, int) and c >= 0 else None,
            cached=cached if isinstance(cached, int) and cached >= 0 else None,
            reasoning=reasoning if isinstance(reasoning, int) and reasoning > 0 else 0,
        )
    exact = listing is not None and request is not None and listing.count_exact
    counted = Counted(
        prompt=prompt_counted,
        completion=completion_counted,
        tokenizer_exact=exact,
        prompt_covered=request is not None
        and request.prompt_covered
        and (listing is None or request.encoding == listing.count_encoding),
        completion_covered=not tool_calls and (request is None or request.completion_covered),
    )
    b = bill(reported, counted)
    return Usage(
        prompt=b.prompt,
        completion=b.completion,
        cached=b.cached,
        native_prompt=reported.prompt if reported else None,
        native_completion=reported.completion if reported else None,
        counted_completion=completion_counted,
        counted_prompt=prompt_counted,
        audit=b.audit,
    )


def stream_throughput_tps(completion_tokens: int, leg_ms: int, ttft_ms: int | None) -> float | None:
    """Tokens per second a listing generated a stream at: its completion tokens over the time from its
    first byte to its end. `leg_ms` (the leg's whole time) and `ttft_ms` are both counted from when the
    request was sent to that listing, so time spent on earlier attempts (a fallback, a lost hedge) is
    not charged to it. None when nothing was generated or no time passed."""
    if ttft_ms is None or not completion_tokens or leg_ms <= ttft_ms:
        return None
    return completion_tokens * 1000.0 / (leg_ms - ttft_ms)


@dataclass(slots=True)
class Attempt:
    listing_id: str
    provider: str
    status: str  # ok | error | timeout | connect_error | refused | cancelled | continued
    latency_ms: int
    error_type: str | None = None
    trade_id: str | None = None  # `continued`: the trade that billed this listing's part of the stream

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "listing_id": self.listing_id,
            "provider": self.provider,
            "status": self.status,
            "latency_ms": self.latency_ms,
        }
        if self.error_type:
            d["error_type"] = self.error_type
        if self.trade_id:
            d["trade_id"] = self.trade_id
        return d


@dataclass(slots=True)
class TradeState:
    request_id: str
    key: KeyInfo
    model: str
    streamed: bool
    started_ns: int = field(default_factory=time.perf_counter_ns)
    created_ms: int = field(default_factory=now_ms)
    attempts: list[Attempt] = field(default_factory=list)
    listing: ListingInfo | None = None
    hold: int = 0
    hold_id: str = ""  # what the hold is reserved under in the state store (gateway/legs.py Leg)
    # What the hold covers, in the listing's price unit (tokens, or characters for a per-character
    # listing): settlement never bills more (invariant 3).
    hold_prompt_tokens: int = 0
    hold_completion_tokens: int = 0
    ttft_ms: int | None = None  # from when the request was sent to the listing that served it
    # perf_counter_ns when the request was sent to the listing serving the trade (its leg's `t0`);
    # 0 = not known, the request's start stands in.
    served_ns: int = 0
    finish_reason: str | None = None
    characters: int | None = None  # of the request's input (speech), else None

    def elapsed_ms(self) -> int:
        return (time.perf_counter_ns() - self.started_ns) // 1_000_000

    def cost(self, usage: Usage, fee_bps: int, reserve_bps: int) -> TradeCost:
        assert self.listing is not None
        prompt = usage.prompt if self.listing.price_unit == "token" else usage.characters or 0
        # Never settle above the hold (invariant 3): tokens beyond what admission reserved are not billed.
        return trade_cost(
            prompt_tokens=min(prompt, self.hold_prompt_tokens),
            completion_tokens=min(usage.completion, self.hold_completion_tokens),
            cached_tokens=usage.cached,
            input_price=self.listing.input_price,
            output_price=self.listing.output_price,
            cached_input_price=self.listing.cached_input_price,
            fee_bps=fee_bps,
            reserve_bps=reserve_bps,
        )

    def row(
        self, status: str, usage: Usage | None, cost: TradeCost | None, error_code: str | None
    ) -> TradeRecord:
        lst = self.listing
        u = usage or Usage()
        return TradeRecord(
            id=self.request_id,
            buyer_account_id=self.key.account_id,
            key_id=self.key.id,
            model=self.model,
            upstream_model=lst.upstream_model if lst else None,
            listing_id=lst.id if lst else None,
            seller_account_id=lst.seller_id if lst else None,
            provider=lst.provider if lst else None,
            streamed=int(self.streamed),
            status=status,
            finish_reason=self.finish_reason,
            error_code=error_code,
            latency_ms=self.elapsed_ms(),
            ttft_ms=self.ttft_ms,
            tokens_prompt=u.prompt,
            tokens_completion=u.completion,
            tokens_cached=u.cached,
            native_tokens_prompt=u.native_prompt,
            native_tokens_completion=u.native_completion,
            counted_tokens_completion=u.counted_completion,
            usage_audit=u.audit if usage else "unverifiable",
            hold_micros=self.hold if cost else 0,
            cost_micros=cost.charge if cost else 0,
            seller_payout_micros=(cost.payout + cost.reserve) if cost else 0,
            platform_fee_micros=(cost.fee + cost.rounding) if cost else 0,
            attempts=orjson.dumps([a.as_dict() for a in self.attempts]).decode(),
            created_at=self.created_ms,
            settled_at=now_ms(),
            price_unit=lst.price_unit if lst else None,
            characters_prompt=u.characters,
            counted_tokens_prompt=u.counted_prompt,
            input_price=lst.input_price if lst else None,
            output_price=lst.output_price if lst else None,
            cached_input_price=lst.cached_input_price if lst else None,
        )

    def postings(self, cost: TradeCost) -> list[Posting]:
        assert self.listing is not None
        return trade_postings(self.key.account_id, self.listing.seller_id, cost)
