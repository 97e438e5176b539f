"""Trade reviews: a trade the usage audit flagged (domain/billing.py) is a review. Pure: no I/O.

States: `open` from settlement until an operator resolves it, then `upheld` or `dismissed`, once and for
good (a second resolution is refused: the caller answers 409).

**Held.** While a review is open its seller's whole share of the trade — the payout credited to
`seller:<id>:locked` and the reserve share credited to `seller:<id>:reserve` by the trade's journal — is
held: the earnings release and the reserve release leave it where it is (domain/payouts.py
`release_due`). Dismissing releases the hold (the share follows the normal schedule from then on;
already matured, it moves at once). Upholding refunds the excess and releases what is left.

**Excess** — what the trade billed above the honest amount — is the trade's charge minus the charge of
the same trade at the *honest* quantities, at the prices the trade was billed at, never below 0 nor above
the charge:

* honest prompt = min(billed prompt, Dragonfly's count of the prompt); honest completion =
  min(billed completion, Dragonfly's count of the completion). A kind Dragonfly has no count for (a trade
  settled before prompt counts were recorded) keeps its billed quantity; a trade with no count at all has
  an honest amount of 0: its whole charge is the excess.
* honest cached = min(billed cached, honest prompt): cached tokens cannot be counted, and a listing's
  cached price is never above its input price, so a cache claim can only lower a bill.
* The honest charge is rounded up to a micro-USD like every charge (domain/money.py `trade_cost`).
* Reported reasoning tokens are not kept on the trade, so they are not told apart: an upheld review
  refunds every completion token above the count. (Dismiss a review whose reasoning was real.)

Where the count is exact the bill was already capped at count + slack, so the excess is that slack; where
it was not (an estimated tokenizer, ...) the seller's report stood and the excess is what it inflated.

**Refund journal** (kind `review_refund`, ref = the trade id), for a refund E of a trade whose journal
moved charge C = payout P + reserve R + fee F + rounding D: buyer cash +E; seller locked −floor(P·E/C);
seller reserve −floor(R·E/C); platform fees −floor(F·E/C); platform rounding −(the rest). Every part is
the trade's own split scaled by E/C, rounded down, and the platform's rounding account takes the
residue (E/C of the trade's own residue plus under 3 micro-USD of flooring), so the journal sums to zero,
the seller's accounts and the platform fees never give back more than the trade gave them, and the
platform, not the seller, bears the rounding. A refund of the whole charge reverses the trade exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dragonfly.domain.ledger import (
    PLATFORM_FEES,
    PLATFORM_ROUNDING,
    Posting,
    buyer_cash,
    check_balanced,
    seller_locked,
    seller_reserve,
)
from dragonfly.domain.money import TradeCost, trade_cost

ReviewState = Literal["open", "upheld", "dismissed"]
Action = Literal["uphold", "dismiss"]
STATES: tuple[ReviewState, ...] = ("open", "upheld", "dismissed")
RESOLVED: dict[Action, ReviewState] = {"uphold": "upheld", "dismiss": "dismissed"}
REFUND_KIND = "review_refund"


@dataclass(frozen=True, slots=True)
class Billed:
    """What a flagged trade billed, what Dragonfly counted, and the prices it was billed at (micro-USD per
    1M units). For a per-character trade the prompt is its characters, counted by Dragonfly itself."""

    charge: int
    prompt: int
    completion: int
    cached: int
    counted_prompt: int | None
    counted_completion: int | None
    input_price: int
    output_price: int
    cached_input_price: int | None


def honest_quantities(b: Billed) -> tuple[int, int, int]:
    """(prompt, completion, cached) an honest report would have billed (module docstring)."""
    prompt = b.prompt if b.counted_prompt is None else min(b.prompt, max(0, b.counted_prompt))
    completion = (
        b.completion if b.counted_completion is None else min(b.completion, max(0, b.counted_completion))
    )
    return prompt, completion, min(max(0, b.cached), prompt)


def honest_charge(b: Billed) -> int:
    """The trade's charge at the honest quantities; 0 when Dragonfly counted nothing of it."""
    if b.counted_prompt is None and b.counted_completion is None:
        return 0
    prompt, completion, cached = honest_quantities(b)
    return trade_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        input_price=b.input_price,
        output_price=b.output_price,
        cached_input_price=b.cached_input_price,
        fee_bps=0,
        reserve_bps=0,
    ).charge


def excess(b: Billed) -> int:
    """Micro-USD billed above the honest amount: charge − honest charge, within [0, charge]."""
    charge = max(0, b.charge)
    return max(0, min(charge, charge - honest_charge(b)))


def refund_parts(trade: TradeCost, refund: int) -> TradeCost:
    """What each account of the trade's journal gives back for a refund of `refund` micro-USD: the trade's
    own split scaled by refund / charge, rounded down, the residue to platform rounding. `charge` of the
    result is the refund."""
    if not 0 <= refund <= trade.charge:
        raise ValueError("a refund is between 0 and the trade's charge")
    if refund == 0:
        return TradeCost(charge=0, payout=0, reserve=0, fee=0, rounding=0)
    payout = trade.payout * refund // trade.charge
    reserve = trade.reserve * refund // trade.charge
    fee = trade.fee * refund // trade.charge
    return TradeCost(
        charge=refund, payout=payout, reserve=reserve, fee=fee, rounding=refund - payout - reserve - fee
    )


def refund_postings(buyer_id: str, seller_id: str, parts: TradeCost) -> list[Posting]:
    """The `review_refund` journal: the buyer gets the refund back from the trade's other accounts."""
    if parts.charge <= 0:
        raise ValueError("refund amount must be positive")
    return check_balanced(
        [
            Posting(buyer_cash(buyer_id), parts.charge),
            Posting(seller_locked(seller_id), -parts.payout),
            Posting(seller_reserve(seller_id), -parts.reserve),
            Posting(PLATFORM_FEES, -parts.fee),
            Posting(PLATFORM_ROUNDING, -parts.rounding),
        ]
    )
