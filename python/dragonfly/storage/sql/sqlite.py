"""SQLite driver: one connection on one dedicated thread, WAL, `BEGIN IMMEDIATE` for writes.

Every statement runs under one asyncio lock, so a transaction sees only its own writes and nothing else
interleaves on the shared connection. Other processes (the control plane and the data plane share the
file) are serialised by SQLite itself; `busy_timeout` makes them wait instead of failing.

Checkpoints run on a second connection on their own thread, not inside a commit: SQLite's automatic
checkpoint copies the WAL into the database file (and fsyncs it) in whichever COMMIT crosses 1,000 pages,
which is where a settlement batch on the event loop would pay for it. Profiles under load put that at
a quarter of the data plane's CPU and its worst latencies.

PASSIVE checkpoints alone let the WAL grow without end under steady writes: a writer restarts the WAL
from its beginning only when it finds every frame checkpointed, and with commits every millisecond a
new frame always lands while a checkpoint runs. Measured at 1,000 trades/s: the WAL grew past 350 MB in
8 s, a PASSIVE checkpoint of it took up to 0.8 s, and the commit that finally restarted it truncated the
file (`journal_size_limit`) inline, stalling the event loop 95–116 ms. So once the WAL passes
`RESTART_WAL_BYTES` the checkpoint is a RESTART: it holds the write lock while it copies (the inline
settlement batch, which never waits for a lock, goes to the database thread meanwhile) and then the
next commit starts the WAL over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from dragonfly.logsampling import worth_logging
from dragonfly.storage.ports import Dialect, Executor, Row, UniqueViolation

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000  # other processes (the control plane) may hold the write lock briefly
CHECKPOINT_EVERY_S = 1.0  # at most this often, and only when the WAL was written since the last one
RESTART_WAL_BYTES = 16 * 1024 * 1024  # a WAL past this is checkpointed in RESTART mode
RESTART_WAIT_MS = 250  # how long a RESTART checkpoint waits for writers and readers before giving up
log = logging.getLogger("dragonfly.storage.sqlite")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _one(conn: sqlite3.Connection, sql: str) -> tuple[Any, ...]:
    row: tuple[Any, ...] = conn.execute(sql).fetchone()
    return row


# The task that opened a transaction may run statements inside it without re-taking the lock; any
# other task waits for the lock (and so for the transaction to end).
_TX_OWNER: contextvars.ContextVar[SqliteDatabase | None] = contextvars.ContextVar("sqlite_tx", default=None)


def _current_tx_owner() -> SqliteDatabase | None:
    return _TX_OWNER.get()


@lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    # `$3` -> `?3`: SQLite's numbered parameters keep the portable SQL unchanged otherwise.
    return _PLACEHOLDER.sub(r"?\1", sql)


def _rows(cur: sqlite3.Cursor) -> list[Row]:
    cols = [d[0] for d in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


class _SqliteExecutor:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def fetch_all(self, sql: str, *args: Any) -> list[Row]:
        return await self._db._run(lambda c: _rows(c.execute(_translate(sql), args)))

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch_all(sql, *args)
        return rows[0] if rows else None

    async def fetch_val(self, sql: str, *args: Any) -> Any:
        row = await self.fetch_one(sql, *args)
        return next(iter(row.values())) if row else None

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._db._run(lambda c: c.execute(_translate(sql), args).rowcount)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self._db._run(lambda c: c.executemany(_translate(sql), rows))


class SqliteDatabase(_SqliteExecutor):
    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__(self)
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._lock = asyncio.Lock()
        self._in_tx = False
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)

        def _open() -> sqlite3.Connection:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            if self._path != ":memory:":
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer task does it
                conn.execute("PRAGMA journal_size_limit=67108864")
            return conn

        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._pool, _open)
        if self._path != ":memory:":
            self._checkpointer = loop.create_task(self._checkpoint_loop(), name="sqlite-checkpoint")

    async def _checkpoint_loop(self) -> None:
        """Checkpoints off the event loop: PASSIVE (never waits for or blocks a writer), then RESTART
        when the WAL has grown past `RESTART_WAL_BYTES`."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ckpt")
        loop = asyncio.get_running_loop()
        wal = self._path + "-wal"
        conn: sqlite3.Connection | None = None
        try:
            conn = await loop.run_in_executor(
                pool, lambda: sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            )
            await loop.run_in_executor(pool, conn.execute, f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
            page_size = int((await loop.run_in_executor(pool, _one, conn, "PRAGMA page_size"))[0])

            def checkpoint() -> None:
                # The copy runs PASSIVE (writers go on); only a WAL grown past the limit is then
                # restarted, which blocks writers for what little landed since.
                _busy, frames, _copied = _one(conn, "PRAGMA wal_checkpoint(PASSIVE)")
                if frames * page_size >= RESTART_WAL_BYTES:
                    _one(conn, "PRAGMA wal_checkpoint(RESTART)")

            last: tuple[int, int] | None = None
            failures = 0
            while True:
                await asyncio.sleep(CHECKPOINT_EVERY_S)
                try:
                    st = os.stat(wal)
                except OSError:
                    continue
                stamp = (st.st_mtime_ns, st.st_size)
                if stamp != last:
                    try:
                        await loop.run_in_executor(pool, checkpoint)
                    except sqlite3.Error as exc:  # e.g. a disk I/O error: try again next time
                        failures += 1
                        if worth_logging(failures):
                            log.warning("checkpoint failed (%d so far): %s", failures, type(exc).__name__)
                        continue
                    last = stamp
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never take the database down with it; commits still work without
            log.warning("checkpointer stopped: %s", type(exc).__name__)
        finally:
            # Close on the checkpoint thread itself, after any checkpoint still running there (a
            # cancelled await does not stop it): one connection used by two threads at once crashed
            # the interpreter in CI.
            if conn is not None:
                closing = loop.run_in_executor(pool, conn.close)
                with contextlib.suppress(BaseException):
                    await asyncio.shield(closing)
            pool.shutdown(wait=False)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("database is closed")

        def _guarded() -> T:
            try:
                return fn(conn)
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                    raise UniqueViolation(str(exc)) from None
                raise

        fut = asyncio.get_running_loop().run_in_executor(self._pool, _guarded)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The statement keeps running on the connection: hold the caller's lock until it is done,
            # or the settlement batch (which runs inline on the loop) could use the connection at the
            # same time from another thread.
            with contextlib.suppress(BaseException):
                await fut
            raise

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._in_tx and _current_tx_owner() is self:
            return await self._call(fn)
        async with self._lock:
            return await self._call(fn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._call(lambda c: c.execute("BEGIN IMMEDIATE"))
            token = _TX_OWNER.set(self)
            self._in_tx = True
            try:
                yield self
            except BaseException:
                await self._call(lambda c: c.execute("ROLLBACK"))
                raise
            else:
                await self._call(lambda c: c.execute("COMMIT"))
            finally:
                self._in_tx = False
                _TX_OWNER.reset(token)

    async def write_batch(self, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        translated = [(_translate(sql), rows) for sql, rows in steps if rows]

        def _transaction(c: sqlite3.Connection) -> Generator[None, None, None]:
            # The batch as one transaction that pauses (yields) before each statement after BEGIN and
            # before COMMIT. Closed at a pause, GeneratorExit rolls it back.
            c.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in translated:
                    yield
                    c.executemany(sql, rows)
                yield
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        def _run(c: sqlite3.Connection) -> None:  # on the database thread: no pauses
            for _ in _transaction(c):
                pass

        async def _run_inline(c: sqlite3.Connection) -> None:
            # A turn of the event loop at every pause: requests that arrived meanwhile take their step
            # between the statements instead of waiting behind the whole batch (its COMMIT alone writes a
            # WAL frame per touched page). No other statement can use the connection in between: the
            # lock is held.
            tx = _transaction(c)
            try:
                for _ in tx:
                    await asyncio.sleep(0)
            finally:
                tx.close()  # cancelled at a pause: rolled back

        async with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("database is closed")
            # A small batch costs less inline (tens of µs) than a hop to the database thread with the GIL
            # ping-pong that comes with it. Holding the lock, no other statement is in flight on the
            # connection. Inline never waits for another process's write lock: then the batch goes to
            # the thread, which may.
            conn.execute("PRAGMA busy_timeout=0")
            try:
                await _run_inline(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                    raise UniqueViolation(str(exc)) from None
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await self._call(_run)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._pool, conn.close)
        self._pool.shutdown(wait=False)
