"""The storage interfaces the rest of Dragonfly depends on.

SQL is written once, in the portable subset both drivers accept: `$1, $2, ...` placeholders, ids as text
made by the application, money as integer micro-USD, time as integer epoch milliseconds, JSON as text,
booleans as 0/1 integers. Rows come back as plain dicts.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgres"]

# The longest the settlement batch's Python work (building its rows, converting them for SQLite) runs
# before it lets the event loop turn. Timed, not counted: a trade's rows take 6 µs to build on a quiet
# machine and 18 µs while the database commits on the other core, so the counts used until 2026-12-07
# (16 trades, 2,048 parameters a slice) held the loop over 200 µs once per batch there.
LOOP_SLICE_S = 50e-6


class Executor(Protocol):
    """What both a database handle and an open transaction can do."""

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetch_one(self, sql: str, *args: Any) -> Row | None: ...
    async def fetch_val(self, sql: str, *args: Any) -> Any: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...


class Database(Executor, Protocol):
    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """A write transaction: SQLite `BEGIN IMMEDIATE`, PostgreSQL READ COMMITTED."""
        ...

    async def write_batch(self, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Run each `(sql, rows)` step as an executemany, in order, in ONE transaction, with no reads in
        between: SQLite does it in a single hop to its thread, PostgreSQL in one connection. Raises
        `CommitOutcomeUnknown` when the connection was lost while the steps were on their way."""
        ...

    async def close(self) -> None: ...


class DatabaseUnavailable(Exception):
    """The database could not be reached; the caller answers 503 service_unavailable."""


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection was lost after a write was sent and before its answer came: the server may have
    committed it or not. A settlement batch is idempotent by request id, so the writer resolves this by
    making it again (`gateway/settlement.py`); whoever still gets it must not say "not charged"."""


class UniqueViolation(Exception):
    """An INSERT/UPDATE hit a UNIQUE or PRIMARY KEY constraint."""
