"""PostgreSQL driver over an asyncpg pool, and one connection of its own for the settlement batch."""

from __future__ import annotations

import asyncio
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
        # `write_batch`'s own connection (opened on first use, replaced when it is found closed), used
        # one batch at a time: a pool checkout and return cost ~60 µs of the event loop and of the
        # request's wait per batch (acquire, the reset hook, release), as much as the rest of the
        # client's work for a one-trade batch (2026-12-07, `SELECT 1`: 172 µs p50 and 121 µs of CPU
        # through the pool, 108 and 66 on a connection).
        self._writer: asyncpg.Connection | None = None
        self._writer_lock = asyncio.Lock()

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
        async with self._writer_lock:
            conn = await self._writer_connection()
            try:
                if len(todo) == 1 and len(todo[0][1]) == 1:
                    # One statement is a transaction of its own: one round trip, no BEGIN and COMMIT.
                    sql, (row,) = todo[0]
                    await conn.execute(sql, *row)
                    return
                async with conn.transaction():
                    for sql, rows in todo:
                        await conn.executemany(sql, rows)
            except asyncpg.UniqueViolationError as exc:
                raise UniqueViolation(str(exc)) from None
            except asyncpg.PostgresError:
                if conn.is_closed():  # a FATAL one (the server shut the connection): open another next
                    self._writer = None
                raise
            except BaseException:
                # Lost, a protocol out of step (after the server dropped the connection asyncpg may only
                # notice on the next call: InternalClientError), cancelled mid-call: never reuse it.
                self._writer = None
                conn.terminate()
                raise

    async def _writer_connection(self) -> asyncpg.Connection:
        conn = self._writer
        if conn is not None and not conn.is_closed():
            return conn
        self._writer = None
        try:
            self._writer = conn = await asyncpg.connect(self._dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from None
        return conn

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                await writer.close(timeout=5)
            except Exception:  # already broken: just drop it
                writer.terminate()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
