"""Usage reports over the buyer's own trades."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dragonfly.domain.key_rules import is_key_group
from dragonfly.domain.money import usd
from dragonfly.errors import InvalidRequest
from dragonfly.ids import now_ms, parse_iso_ms
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import reports
from dragonfly.storage.sql.repos.reports import DAY_MS

FAR_FUTURE_MS = 253_402_300_799_000  # 9999-12-31


def _sums(row: Row) -> dict[str, Any]:
    return {
        "requests": int(row["requests"]),
        "prompt_tokens": int(row["prompt_tokens"]),
        "completion_tokens": int(row["completion_tokens"]),
        "cost_usd": usd(int(row["cost_micros"])),
    }


def parse_window(start: str | None, end: str | None) -> tuple[int, int]:
    try:
        start_ms = parse_iso_ms(start) if start else 0
        end_ms = parse_iso_ms(end) if end else FAR_FUTURE_MS
    except ValueError:
        raise InvalidRequest("from and to must be ISO 8601 times.", param="from") from None
    if end_ms < start_ms:
        raise InvalidRequest("to must not be before from.", param="to")
    return start_ms, end_ms


async def totals(db: Database, account_id: str, *, start_ms: int, end_ms: int) -> dict[str, Any]:
    return _sums(await reports.totals(db, account_id=account_id, start_ms=start_ms, end_ms=end_ms))


def parse_group(group: str | None) -> str | None:
    """The `group` filter: absent, or a name a key's `key_group` may have (as `POST /api/keys` checks it)."""
    if group is None:
        return None
    if not is_key_group(group):
        raise InvalidRequest(
            "group must be a key group name: 1 to 64 of a-z, 0-9, '-' and '_'.", param="group"
        )
    return group


async def by_key(
    db: Database, account_id: str, *, start_ms: int, end_ms: int, group: str | None = None
) -> dict[str, Any]:
    rows = await reports.by_key(db, account_id=account_id, start_ms=start_ms, end_ms=end_ms, group=group)
    return {
        "data": [
            {"key_id": r["key_id"], "name": r["key_name"], "key_group": r["key_group"], **_sums(r)}
            for r in rows
        ]
    }


async def by_group(db: Database, account_id: str, *, start_ms: int, end_ms: int) -> dict[str, Any]:
    rows = await reports.by_group(db, account_id=account_id, start_ms=start_ms, end_ms=end_ms)
    return {"data": [{"key_group": r["key_group"], "keys": int(r["keys"]), **_sums(r)} for r in rows]}


def parse_days(days: str | None) -> int:
    try:
        value = int(days) if days else 30
    except ValueError:
        raise InvalidRequest("days must be an integer.", param="days") from None
    if not 1 <= value <= 366:
        raise InvalidRequest("days must be between 1 and 366.", param="days")
    return value


async def daily(db: Database, account_id: str, *, days: int) -> dict[str, Any]:
    """Per UTC day, with a per-model breakdown; the window starts at 00:00 UTC `days - 1` days ago."""
    today = now_ms() // DAY_MS
    first_day = today - (days - 1)
    rows = await reports.daily(db, account_id=account_id, start_ms=first_day * DAY_MS)
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        day = int(r["day"])
        entry = out.setdefault(
            day,
            {
                "date": datetime.fromtimestamp(day * DAY_MS / 1000, tz=UTC).date().isoformat(),
                "requests": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_micros": 0,
                "models": [],
            },
        )
        for name in ("requests", "prompt_tokens", "completion_tokens", "cost_micros"):
            entry[name] += int(r[name])
        entry["models"].append({"model": r["model"], **_sums(r)})
    data = []
    for day in sorted(out):
        entry = out[day]
        entry["cost_usd"] = usd(entry.pop("cost_micros"))
        data.append(entry)
    return {"days": days, "data": data}
