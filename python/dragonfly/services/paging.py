"""Cursor pagination parameters shared by the list endpoints (`?limit=&cursor=`, newest first)."""

from __future__ import annotations

from dragonfly.errors import InvalidRequest

MAX_PAGE = 100
DEFAULT_PAGE = 20


def parse_page(limit: str | None, cursor: str | None) -> tuple[int, int | None]:
    try:
        size = int(limit) if limit else DEFAULT_PAGE
        before = int(cursor) if cursor else None
    except ValueError:
        raise InvalidRequest(
            "limit and cursor must be integers.", param="limit" if limit else "cursor"
        ) from None
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    return size, before
