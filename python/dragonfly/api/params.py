"""The query parameters the control plane's handlers read (`call.query(name)`), declared once: the route
table names them per route (`Route(..., query=PAGE)`) and the OpenAPI description (api/openapi.py) is
made from them. Bounds come from the services that parse the values, so the description cannot drift
from what is enforced; tests/unit/test_openapi.py checks every name a handler reads is declared."""

from __future__ import annotations

from typing import Any, NamedTuple

from dragonfly.api.schemas.listings import KINDS
from dragonfly.domain.key_rules import KEY_GROUP_PATTERN
from dragonfly.domain.market_health import DEFAULT_WINDOW_S, MAX_WINDOW_S, MIN_WINDOW_S
from dragonfly.domain.reviews import STATES as REVIEW_STATES
from dragonfly.services.credits import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY
from dragonfly.services.earnings import BUCKETS, MAX_MONTHS
from dragonfly.services.paging import DEFAULT_PAGE, MAX_PAGE
from dragonfly.services.payouts import STATUSES as PAYOUT_STATUSES


class Query(NamedTuple):
    """One optional query parameter: its name, JSON Schema (as the value reads once decoded) and a line
    for the reader."""

    name: str
    schema: dict[str, Any]
    description: str


class Header(NamedTuple):
    """One optional request header the handler reads: its name, JSON Schema and a line for the reader."""

    name: str
    schema: dict[str, Any]
    description: str


_TIME = {"type": "string", "format": "date-time"}

LIMIT = Query(
    "limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "Page size."
)
# Journal and settlement pages: the cursor is a number (the `next_cursor` of the previous page).
PAGE = (
    LIMIT,
    Query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "`next_cursor` of the previous page."),
)
# Trade pages: the cursor is a trade id.
TRADE_PAGE = (
    LIMIT,
    Query("cursor", {"type": "string", "format": "uuid"}, "`next_cursor` of the previous page (a trade id)."),
)
# Review queues (the operator's flagged trades, the seller's trade reviews): a trade page, one state only.
REVIEW_PAGE = (
    *TRADE_PAGE,
    Query("state", {"type": "string", "enum": list(REVIEW_STATES)}, "Only reviews in this state."),
)
# Payout pages: the cursor is a payout id.
PAYOUT_PAGE = (
    LIMIT,
    Query("cursor", {"type": "string", "format": "uuid"}, "`next_cursor` of the previous page (payout id)."),
    Query("status", {"type": "string", "enum": list(PAYOUT_STATUSES)}, "Only payouts in this status."),
)
WINDOW = (
    Query("from", _TIME, "Start of the window (ISO 8601, inclusive); open when absent."),
    Query("to", _TIME, "End of the window (ISO 8601, exclusive); open when absent."),
)
GROUP = Query(
    "group",
    {"type": "string", "pattern": KEY_GROUP_PATTERN},
    "Only the keys of this `key_group` (a name as `POST /api/keys` takes it).",
)
DAYS = (Query("days", {"type": "integer", "minimum": 1, "maximum": 366, "default": 30}, "UTC days back."),)
MONTHS = (
    Query(
        "months",
        {"type": "integer", "minimum": 1, "maximum": MAX_MONTHS, "default": 12},
        "Calendar months back.",
    ),
)
BUCKET = Query("bucket", {"type": "string", "enum": list(BUCKETS), "default": "day"}, "Width of a point.")
MARKET_WINDOW = (
    Query(
        "window_s",
        {"type": "integer", "minimum": MIN_WINDOW_S, "maximum": MAX_WINDOW_S, "default": DEFAULT_WINDOW_S},
        "Look-back window in seconds.",
    ),
)
KIND = (Query("kind", {"type": "string", "enum": list(KINDS), "default": "chat"}, "Listing kind."),)
ACTIVITY = (
    Query("model", {"type": "string", "maxLength": 128}, "Only decisions for this market model."),
    Query("profile_id", {"type": "string", "format": "uuid"}, "Only decisions under this routing profile."),
    LIMIT,
)

# POST /api/admin/credits (services/credits.py).
CREDIT_IDEMPOTENCY = Header(
    IDEMPOTENCY_HEADER,
    {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
    "Makes the credit at most once per operator and key: a retry with the same key and the same body"
    " gets the first credit's answer (201, `idempotent-replayed: true`) instead of a second credit; the same"
    " key with a different account, amount or note is refused (409 `conflict`).",
)
