"""Listing lifecycle rules: price review, which status changes a seller may ask for, and which listings
may state a price unit."""

from __future__ import annotations

PRICE_REVIEW_RATIO_BPS = 5_000  # a move of more than 50 % from the confirmed price needs confirmation
STATUSES = ("pending", "active", "paused", "price_review", "suspended")
CONTRACT_STATUSES = ("pending", "active", "degraded", "suspended")


def moved_too_far(confirmed: int, new: int) -> bool:
    """True when `new` differs from `confirmed` by more than 50 % of `confirmed` (either way).
    From a confirmed price of zero, any non-zero price is too far."""
    if confirmed == 0:
        return new != 0
    return abs(new - confirmed) * 10_000 > confirmed * PRICE_REVIEW_RATIO_BPS


def needs_price_review(
    *, confirmed_input: int, confirmed_output: int, new_input: int, new_output: int
) -> bool:
    return moved_too_far(confirmed_input, new_input) or moved_too_far(confirmed_output, new_output)


def unpaused_status(contract_status: str) -> str:
    """Where a listing goes when resumed or when its price is confirmed: `active` with an active or
    degraded contract, and with a contract health suspended (unroutable until a re-probe or the seller's
    unsuspend lifts it; an operator suspension never reaches here: it suspends the listing itself);
    otherwise back to waiting for its admission probe."""
    return "active" if contract_status in ("active", "degraded", "suspended") else "pending"


def seller_status_change(current: str, requested: str, contract_status: str) -> str:
    """The status a seller's PATCH `status` leads to; raises ValueError when not allowed."""
    if requested == current or (requested == "active" and current == "pending"):
        return current
    if current == "suspended":
        raise ValueError("A suspended listing is changed by the platform, not the seller.")
    if current == "price_review":
        raise ValueError("Confirm the new price first (POST /v1/market/listings/:id/confirm-price).")
    if requested == "paused":
        return "paused"
    if requested == "active":
        return unpaused_status(contract_status)
    raise ValueError(f"unknown status {requested!r}")


# What a listing's input price is per. Every kind is priced per token; a speech listing may instead be
# priced per input character (USD per 1M characters), as text-to-speech providers bill.
PRICE_UNITS = ("token", "character")
PRICED_PER_CHARACTER_KINDS = ("speech",)


def check_price_unit(kind: str, unit: str | None) -> None:
    """Raises ValueError unless a listing of `kind` may state `unit` (None: not stated)."""
    if unit is None:
        return
    if kind not in PRICED_PER_CHARACTER_KINDS:
        raise ValueError(f"price_unit applies to speech listings only; a {kind} listing is priced per token.")
    if unit not in PRICE_UNITS:
        raise ValueError(f"price_unit must be one of {', '.join(PRICE_UNITS)}.")
