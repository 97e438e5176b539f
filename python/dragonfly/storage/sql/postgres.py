"""PostgreSQL driver over an asyncpg pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from dragonfly.storage.ports import DatabaseUnavailable, Dialect, Executor, Row, UniqueViolation


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, instead of asyncpg's default reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): one more round trip after every pooled query, for session state Dragonfly never
    leaves on a pooled connection (its advisory locks are transaction-scoped, LISTEN has a connection of
    its own, nothing SETs or DECLAREs outside a transaction). asyncpg still rolls back a transaction left
    open before calling this."""


class _PgExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn  # an asyncpg Pool or Connection: both have the same query methods

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        try:
            return [dict(r) for r in await self._conn.fetch(sql, *args)]
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        try:
            row = await self._conn.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None
        return dict(row) if row is not None else None

    async def fetch_val(self, sql: str, *args: Any) -> Any:
        row = await self.fetch_one(sql, *args)
        return next(iter(row.values())) if row else None

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            status: str = await self._conn.execute(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None


class PostgresDatabase(_PgExecutor):
    dialect: Dialect = "postgres"

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min, max_size=self._max, reset=_keep_session
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from None
        super().__init__(self._pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        if self._pool is None:
            raise RuntimeError("database is closed")
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgExecutor(conn)

    async def write_batch(self, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        if self._pool is None:
            raise RuntimeError("database is closed")
        todo = [(sql, rows) for sql, rows in steps if rows]
        try:
            if len(todo) == 1 and len(todo[0][1]) == 1:
                # One statement is a transaction of its own: one round trip, no BEGIN and COMMIT.
                sql, (row,) = todo[0]
                await self._pool.execute(sql, *row)
                return
            async with self._pool.acquire() as conn, conn.transaction():
                for sql, rows in todo:
                    await conn.executemany(sql, rows)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
