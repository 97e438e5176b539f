"""A seller's earnings: balances from the ledger, reports over their trades, settlement history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dragonfly.domain.ledger import (
    seller_available,
    seller_locked,
    seller_payouts_pending,
    seller_reserve,
)
from dragonfly.domain.money import usd
from dragonfly.errors import InvalidRequest
from dragonfly.ids import iso, now_ms
from dragonfly.services.usage import parse_window
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import earnings as repo
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.sql.repos import payouts as payouts_repo

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BUCKETS = {"hour": HOUR_MS, "day": DAY_MS}
# Default window and the largest allowed window per bucket (bounds the number of points returned).
_DEFAULT_SPAN = {"hour": 2 * DAY_MS, "day": 30 * DAY_MS}
_MAX_POINTS = {"hour": 24 * 31, "day": 366}
MAX_MONTHS = 60


def _sums(row: Row) -> dict[str, Any]:
    prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])
    return {
        "requests": int(row["requests"]),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
        "payout_usd": usd(int(row["payout_micros"])),
    }


def _zero() -> Row:
    return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "payout_micros": 0}


async def overview(db: Database, seller_id: str) -> dict[str, Any]:
    """Where the seller's earnings are. Each amount is in exactly one of: `available_usd` (may be paid
    out), `locked_usd` (inside the lock window), `reserve_usd` (the reserve share, until the reserve
    period passes), `held_usd` (the share of trades under an open review: out of both locked and reserve
    until resolved), `payout_pending_usd` (asked to be paid out, not yet paid) and `paid_out_usd`. Lifetime
    is their sum: everything trades ever credited to the seller, less what upheld reviews refunded."""
    locked = await ledger.balance(db, seller_locked(seller_id))
    reserve = await ledger.balance(db, seller_reserve(seller_id))
    available = await ledger.balance(db, seller_available(seller_id))
    pending = await ledger.balance(db, seller_payouts_pending(seller_id))
    held_locked, held_reserve = await repo.held(db, seller_id)
    paid = await payouts_repo.paid_total(db, seller_id)
    return {
        "available_usd": usd(available),
        "locked_usd": usd(max(0, locked - held_locked)),
        "reserve_usd": usd(max(0, reserve - held_reserve)),
        "held_usd": usd(held_locked + held_reserve),
        "payout_pending_usd": usd(pending),
        "paid_out_usd": usd(paid),
        "lifetime_usd": usd(locked + reserve + available + pending + paid),
    }


async def summary(db: Database, seller_id: str, *, start: str | None, end: str | None) -> dict[str, Any]:
    start_ms, end_ms = parse_window(start, end)
    rows = await repo.by_listing_model(db, seller_id, start_ms=start_ms, end_ms=end_ms)
    total = _zero()
    for r in rows:
        for name in total:
            total[name] += int(r[name])
    return {
        "from": iso(start_ms) if start else None,
        "to": iso(end_ms) if end else None,
        "totals": _sums(total),
        "data": [{"listing_id": r["listing_id"], "model": r["model"], **_sums(r)} for r in rows],
    }


def parse_bucket(bucket: str | None) -> str:
    name = bucket or "day"
    if name not in BUCKETS:
        raise InvalidRequest("bucket must be hour or day.", param="bucket")
    return name


async def timeseries(
    db: Database, seller_id: str, *, bucket: str, start: str | None, end: str | None
) -> dict[str, Any]:
    """One point per bucket in the window (zeros included), oldest first; buckets are UTC-aligned."""
    width = BUCKETS[bucket]
    start_ms, end_ms = parse_window(start, end)
    if not end:
        end_ms = now_ms()
    if not start:
        start_ms = end_ms - _DEFAULT_SPAN[bucket]
    first, last = start_ms // width, (end_ms - 1) // width
    if last - first + 1 > _MAX_POINTS[bucket]:
        raise InvalidRequest(f"At most {_MAX_POINTS[bucket]} {bucket} buckets per request.", param="from")
    rows = await repo.by_bucket(db, seller_id, bucket_ms=width, start_ms=start_ms, end_ms=end_ms)
    found = {int(r["bucket"]): r for r in rows}
    data = [{"start": iso(b * width), **_sums(found.get(b) or _zero())} for b in range(first, last + 1)]
    return {"bucket": bucket, "from": iso(start_ms), "to": iso(end_ms), "data": data}


def parse_months(months: str | None) -> int:
    try:
        value = int(months) if months else 12
    except ValueError:
        raise InvalidRequest("months must be an integer.", param="months") from None
    if not 1 <= value <= MAX_MONTHS:
        raise InvalidRequest(f"months must be between 1 and {MAX_MONTHS}.", param="months")
    return value


def _month_start(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


async def monthly(db: Database, seller_id: str, *, months: int) -> dict[str, Any]:
    """Per calendar month (UTC), the last `months` months including the current one, oldest first.
    Summed per UTC day in SQL (portable), folded into months here."""
    today = datetime.now(tz=UTC)
    index = today.year * 12 + today.month - 1 - (months - 1)
    keys = [f"{(index + i) // 12:04d}-{(index + i) % 12 + 1:02d}" for i in range(months)]
    start_ms = _month_start(index // 12, index % 12 + 1)
    rows = await repo.by_bucket(db, seller_id, bucket_ms=DAY_MS, start_ms=start_ms, end_ms=now_ms() + DAY_MS)
    out = {k: _zero() for k in keys}
    for r in rows:
        key = datetime.fromtimestamp(int(r["bucket"]) * DAY_MS / 1000, tz=UTC).strftime("%Y-%m")
        if key in out:
            for name in out[key]:
                out[key][name] += int(r[name])
    return {"data": [{"month": k, **_sums(out[k])} for k in keys]}


async def settlements(db: Database, seller_id: str, *, limit: int, cursor: int | None) -> dict[str, Any]:
    rows = await repo.settlements(db, seller_id, before_end=cursor, limit=limit + 1)
    page = rows[:limit]
    data = [
        {
            "id": r["id"],
            "amount_usd": usd(int(r["amount_micros"])),
            "trades_count": int(r["trades_count"]),
            "period_start": iso(int(r["period_start"])),
            "period_end": iso(int(r["period_end"])),
            "created_at": iso(int(r["created_at"])),
        }
        for r in page
    ]
    more = len(rows) > limit
    return {
        "data": data,
        "has_more": more,
        "next_cursor": str(page[-1]["period_end"]) if more and page else None,
    }
