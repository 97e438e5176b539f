"""How much a chat or embeddings request may cost at a listing: what admission reserves (the hold) and
the prompt tokens settlement may bill. Shared by the data plane (gateway/chat.py, gateway/stream.py) and
the market simulator (simulate/trade.py), so both reserve alike."""

from __future__ import annotations

from dragonfly.domain.money import worst_case_hold
from dragonfly.gateway.snapshot import ListingInfo

# Completion tokens reserved when the buyer sets no max_tokens (the hold is the worst case we admit).
DEFAULT_COMPLETION_HOLD = 4096
# Prompt tokens may be counted differently by the seller's tokenizer: reserve some headroom.
PROMPT_HOLD_RATIO = 1.25
PROMPT_HOLD_SLACK = 64


def chat_hold(listing: ListingInfo, prompt_tokens: int, completion_tokens: int) -> tuple[int, int]:
    """The worst case a chat or embeddings request can cost at `listing` (what admission reserves), and
    the prompt tokens settlement may bill: the counted prompt with headroom for another tokenizer, and
    `completion_tokens` (max_tokens x n, or the default) at most."""
    hold_prompt = int(prompt_tokens * PROMPT_HOLD_RATIO) + PROMPT_HOLD_SLACK
    hold = worst_case_hold(
        prompt_tokens=hold_prompt,
        max_completion_tokens=completion_tokens,
        # A cached-input price above the input price must not make cost exceed the hold.
        input_price=max(listing.input_price, listing.cached_input_price or 0),
        output_price=listing.output_price,
    )
    return hold, hold_prompt
