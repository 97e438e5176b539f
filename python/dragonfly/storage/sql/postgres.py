"""PostgreSQL driver over an asyncpg pool, and one connection of its own for the settlement batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from dragonfly.storage.ports import (
    CommitOutcomeUnknown,
    DatabaseUnavailable,
    Dialect,
    Executor,
    Row,
    UniqueViolation,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, instead of asyncpg's default reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): one more round trip after every pooled query, for session state Dragonfly never
    leaves on a pooled connection (its advisory locks are transaction-scoped, LISTEN has a connection of
    its own, nothing SETs or DECLAREs outside a transaction). asyncpg still rolls back a transaction left
    open before calling this."""


# The server ended the session: administrator command (a restart, a failover, pg_terminate_backend),
# crash shutdown, idle_session_timeout. A session ended this way runs nothing more, and whatever it had
# not finished is rolled back.
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P05"})


def _dropped_while_idle(exc: BaseException) -> bool:
    """A pooled connection the server dropped while it sat idle, found out by this call, which the server
    never ran: safe to make again on another connection, whatever the statement. asyncpg may not have
    noticed the drop (the pool hands the connection out again) and the call then fails either before
    anything is sent (its protocol is out of step: InternalClientError) or on the server's goodbye
    (ConnectionDoesNotExistError caused by the session's end; had the statement finished, its result
    would have come before that)."""
    if isinstance(exc, asyncpg.InternalClientError):
        return str(exc).startswith("cannot switch to state")
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        seen: BaseException = exc
        for _ in range(4):  # the server's goodbye is its cause (or, raised in a handler, its context)
            nxt = seen.__cause__ or seen.__context__
            if nxt is None:
                break
            if getattr(nxt, "sqlstate", None) in _SESSION_ENDED:
                return True
            seen = nxt
    return False


def _drop(conn: Any) -> None:
    """Close a pooled connection for good (the pool opens another); asyncpg may have let it go already."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


@asynccontextmanager
async def _checkout(
    pool: asyncpg.Pool, first: Callable[[Any], Awaitable[Any]]
) -> AsyncIterator[tuple[Any, Any]]:
    """A pooled connection on which `first` (the call, or BEGIN) succeeded, and its result. After a
    restart every idle connection in the pool may be a dropped one: each found (`_dropped_while_idle`)
    is closed for good and `first` made again on the next, so at most the pool's size of them."""
    last = pool.get_max_size() + 1
    for attempt in range(1, last + 1):
        async with pool.acquire() as conn:
            try:
                result = await first(conn)
            except (asyncpg.InternalClientError, asyncpg.ConnectionDoesNotExistError) as exc:
                if attempt == last or not _dropped_while_idle(exc):
                    raise
                _drop(conn)
                continue
            yield conn, result
            return
    raise AssertionError("unreachable")


class _PgExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn  # an asyncpg Pool or Connection: both have the same query methods

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        """`method` of the connection, or of a pooled one (`_checkout`)."""
        target = self._conn
        try:
            if not isinstance(target, asyncpg.Pool):
                return await getattr(target, method)(sql, *args)
            async with _checkout(target, lambda conn: getattr(conn, method)(sql, *args)) as (_, result):
                return result
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from None

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._call("fetch", sql, *args)]

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        row = await self._call("fetchrow", sql, *args)
        return dict(row) if row is not None else None

    async def fetch_val(self, sql: str, *args: Any) -> Any:
        row = await self.fetch_one(sql, *args)
        return next(iter(row.values())) if row else None

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._call("execute", sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._call("executemany", sql, rows)


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

        async def begin(conn: Any) -> Any:
            tx = conn.transaction()
            await tx.start()
            return tx

        async with _checkout(self._pool, begin) as (conn, tx):
            try:
                yield _PgExecutor(conn)
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()

    async def write_batch(self, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        if self._pool is None:
            raise RuntimeError("database is closed")
        todo = [(sql, rows) for sql, rows in steps if rows]
        async with self._writer_lock:
            for attempt in (1, 2):
                conn = await self._writer_connection()
                try:
                    await self._write(conn, todo)
                    return
                except asyncpg.UniqueViolationError as exc:
                    raise UniqueViolation(str(exc)) from None
                except BaseException as exc:
                    if isinstance(exc, asyncpg.PostgresError) and not conn.is_closed():
                        raise  # the statement's own error: the connection is fine
                    # Lost, a protocol out of step, cancelled mid-call: never reuse it.
                    self._writer = None
                    _drop(conn)
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the caller is going away
                    if _dropped_while_idle(exc):
                        # Dropped by the server while idle (a restart): the batch never ran, so it goes
                        # on a new connection.
                        if attempt == 2:
                            raise DatabaseUnavailable(type(exc).__name__) from exc
                        continue
                    # Lost mid-call (a reset, a proxy or the server going away while it ran): the
                    # server may have committed the batch before its answer was lost.
                    raise CommitOutcomeUnknown(type(exc).__name__) from exc

    @staticmethod
    async def _write(conn: asyncpg.Connection, todo: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        if len(todo) == 1 and len(todo[0][1]) == 1:
            # One statement is a transaction of its own: one round trip, no BEGIN and COMMIT.
            sql, (row,) = todo[0]
            await conn.execute(sql, *row)
            return
        async with conn.transaction():
            for sql, rows in todo:
                await conn.executemany(sql, rows)

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
