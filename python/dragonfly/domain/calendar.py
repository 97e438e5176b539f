"""UTC calendar helpers for money periods (key budgets run per calendar month, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=64)
def _month_of_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=UTC).strftime("%Y-%m")


def month_of(now_ms: int) -> str:
    """The UTC month (`YYYY-MM`) of an epoch-ms time; cached per hour (months start on hour bounds)."""
    return _month_of_hour(now_ms // 3_600_000)
