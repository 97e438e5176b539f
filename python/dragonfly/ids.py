"""Ids and time, made in business logic (never by the database)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

_RAND_B_MASK = (1 << 62) - 1


def new_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits (os.urandom).

    Time-ordered on purpose: trade, journal and entry ids are primary keys and index keys, and a random
    (v4) key lands every insert on a different B-tree page, so each commit rewrote a page per row per
    index. In time order they append to the same few rightmost pages (measured: `benchmarks/micro/
    bench_settlement.py`). The random part keeps ids unguessable."""
    ms = time.time_ns() // 1_000_000
    # os.urandom per id: a pooled buffer saved ~0.4 µs per id, gone once it had the lock threads need.
    r = int.from_bytes(os.urandom(10), "big")  # 80 bits: 12 for rand_a, 62 for rand_b
    v = (ms << 80) | (0x7 << 76) | ((r >> 68) << 64) | (0b10 << 62) | (r & _RAND_B_MASK)
    h = f"{v:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def line_id(journal_id: str, line: int) -> str:
    """The id of a journal's `line`-th entry (0-255): the journal's UUIDv7 with its last byte replaced
    by the line number, still a valid v7. Unique as long as no two journals share their first 120 bits
    (the same millisecond and 66 equal random bits); a fifth of the cost of `new_id`, which settling a
    trade would otherwise pay per line."""
    return f"{journal_id[:-2]}{line:02x}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """Epoch ms -> ISO 8601 UTC with a trailing Z, as every API response shows time."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_ms(text: str) -> int:
    """ISO 8601 -> epoch ms (naive = UTC). Raises ValueError for a time `iso` cannot show again: an offset
    can carry year 1 or 9999 out of range in UTC (that was a 500 when the time was answered back)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = int(dt.timestamp() * 1000)
    iso(ms)  # ValueError ("year 10000 is out of range") when it cannot be shown
    return ms
