"""Cursor pagination parameters shared by the list endpoints (`?limit=&cursor=`, newest first)."""

from __future__ import annotations

from dragonfly.errors import InvalidRequest

MAX_PAGE = 100
DEFAULT_PAGE = 20
# Cursors are signed 64-bit columns (journal ids, times in ms); a larger number overflowed the database
# driver (a 500).
MAX_CURSOR = 2**63 - 1


def parse_page(limit: str | None, cursor: str | None) -> tuple[int, int | None]:
    try:
        size = int(limit) if limit else DEFAULT_PAGE
    except ValueError:
        raise InvalidRequest("limit and cursor must be integers.", param="limit") from None
    try:
        before = int(cursor) if cursor else None
    except ValueError:
        raise InvalidRequest("limit and cursor must be integers.", param="cursor") from None
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    if before is not None and not 0 <= before <= MAX_CURSOR:
        raise InvalidRequest("cursor must be the next_cursor of a previous page.", param="cursor")
    return size, before
