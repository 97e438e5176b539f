"""What one trade is, as it is recorded: the row of the trades table and the receipt's source. Written
once, at settlement, together with its journal; the gateway builds it, storage writes it."""

from __future__ import annotations

from dragonfly.record import record


@record
class TradeRecord:
    id: str
    buyer_account_id: str
    key_id: str
    model: str
    upstream_model: str | None
    listing_id: str | None
    seller_account_id: str | None
    provider: str | None
    streamed: int
    status: str  # completed | failed | cancelled | refused
    finish_reason: str | None
    error_code: str | None
    latency_ms: int | None
    ttft_ms: int | None
    tokens_prompt: int
    tokens_completion: int
    tokens_cached: int
    native_tokens_prompt: int | None
    native_tokens_completion: int | None
    counted_tokens_completion: int | None
    usage_audit: str
    hold_micros: int
    cost_micros: int
    seller_payout_micros: int
    platform_fee_micros: int
    attempts: str  # JSON text
    created_at: int
    settled_at: int
    # What the listing's input price was per (`token` | `character`; None when no listing answered), and
    # the request's input characters (speech only). Defaulted: settlement-log records written before they
    # existed still read (storage/sql/settlement_log.py).
    price_unit: str | None = None
    characters_prompt: int | None = None
    # Dragonfly's own count of the prompt (with the listing's tokenizer), beside the seller's report
    # (`native_tokens_prompt`) and what was billed (`tokens_prompt`): domain/billing.py. None for trades
    # settled before it was recorded, and where no prompt was counted.
    counted_tokens_prompt: int | None = None
    # The prices the trade was billed at (micro-USD per 1M tokens; the input price per 1M characters for a
    # `character` trade), so a review can price what was billed above Dragonfly's counts
    # (domain/reviews.py). None when no listing answered, and for trades settled before they were recorded.
    input_price: int | None = None
    output_price: int | None = None
    cached_input_price: int | None = None
