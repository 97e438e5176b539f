"""SQLite driver: one connection on one dedicated thread, WAL, `BEGIN IMMEDIATE` for writes.

Every statement runs under one asyncio lock, so a transaction sees only its own writes and nothing else
interleaves on the shared connection. Other processes (the control plane and the data plane share the
file) are serialised by SQLite itself; `busy_timeout` makes them wait instead of failing.

The settlement batch (`write_batch`) has a connection and a thread of its own: the native batch writer
(rust_core/io), which runs the whole transaction with the GIL released. Run on the event loop, the batch
stalled every request on it for each statement and its COMMIT (about 600 µs per batch at the median
under load); on a Python thread it would take the GIL back for every row. Its connection and this one
are serialised by SQLite like two processes; readers here see a batch whole or not at all.

Checkpoints run on a second connection on their own thread, not inside a commit: SQLite's automatic
checkpoint copies the WAL into the database file (and fsyncs it) in whichever COMMIT crosses 1,000 pages,
which is where a settlement batch on the event loop would pay for it. Profiles under load put that at
a quarter of the data plane's CPU and its worst latencies.

PASSIVE checkpoints alone let the WAL grow without end under steady writes: a writer restarts the WAL
from its beginning only when it finds every frame checkpointed, and with commits every millisecond a
new frame always lands while a checkpoint runs. Measured at 1,000 trades/s: the WAL grew past 350 MB in
8 s, a PASSIVE checkpoint of it took up to 0.8 s, and the commit that finally restarted it truncated the
file (`journal_size_limit`) inline, stalling the event loop 95–116 ms. So once the WAL passes
`RESTART_WAL_BYTES` the checkpoint is a RESTART: it holds the write lock while it copies (the settlement
batch waits for it on its own thread) and then the next commit starts the WAL over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from dragonfly.logsampling import worth_logging
from dragonfly.native.sqlite_batch import SqliteBatch, SqliteBatchWriter, SqliteWriteError, error_kind
from dragonfly.storage.ports import LOOP_SLICE_S, Dialect, Executor, Row, UniqueViolation
from dragonfly.storage.sql.job_thread import JobThread

T = TypeVar("T")
BUSY_TIMEOUT_MS = 10_000  # other processes (the control plane) may hold the write lock briefly
CHECKPOINT_EVERY_S = 1.0  # at most this often, and only when the WAL was written since the last one
RESTART_WAL_BYTES = 16 * 1024 * 1024  # a WAL past this is checkpointed in RESTART mode
RESTART_WAIT_MS = 250  # how long a RESTART checkpoint waits for writers and readers before giving up
# `write_batch` converts rows this many parameters at a time (0.1–0.2 µs each), and lets the event loop
# turn between two such calls once LOOP_SLICE_S has passed.
CHUNK_VALUES = 256
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
        self._thread: JobThread | None = None  # the connection's thread: every statement runs there
        self._lock = asyncio.Lock()
        self._in_tx = False
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        # The settlement batch's own connection and thread (a file database only): see `write_batch`.
        self._writer: SqliteBatchWriter | None = None
        self._writer_thread: JobThread | None = None

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
        self._thread = JobThread("sqlite")
        self._conn = await self._thread.run(_open)
        if self._path != ":memory:":
            self._writer_thread = JobThread("sqlite-batch")
            self._writer = await self._writer_thread.run(SqliteBatchWriter, self._path, BUSY_TIMEOUT_MS)
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
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            raise RuntimeError("database is closed")

        def _guarded() -> T:
            try:
                return fn(conn)
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                    raise UniqueViolation(str(exc)) from None
                raise

        fut = thread.run(_guarded)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The statement keeps running on the connection: hold the caller's lock until it is done,
            # or the next statement could use the connection while it runs.
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
        """One transaction of fixed statements, each run for its rows (the settlement batch): committed
        whole or not at all. A file database commits it on the native batch writer's connection, off the
        event loop; only converting the rows runs here, with a turn of the loop every `LOOP_SLICE_S`.
        Cancelled after the commit started, it waits for the commit to end: the batch may then be in the
        database (callers replay by request id, idempotently)."""
        writer, thread = self._writer, self._writer_thread
        if writer is None or thread is None:
            await self._write_batch_on_thread(steps)
            return
        batch = SqliteBatch()
        started = time.perf_counter()
        for sql, rows in steps:
            if not rows:
                continue
            translated = _translate(sql)
            per = max(1, CHUNK_VALUES // max(1, len(rows[0])))
            for i in range(0, len(rows), per):
                if time.perf_counter() - started > LOOP_SLICE_S:
                    await asyncio.sleep(0)
                    started = time.perf_counter()
                batch.add(translated, rows[i : i + per])
        await asyncio.sleep(0)  # handing the batch to the writer's thread: a slice of its own
        fut = thread.run(writer.write, batch)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await fut
            raise
        except SqliteWriteError as exc:
            kind, message = error_kind(exc)
            if kind == "unique":
                raise UniqueViolation(message) from None
            if kind == "constraint":
                raise sqlite3.IntegrityError(message) from None
            if kind == "transient":
                raise sqlite3.OperationalError(message) from None
            raise sqlite3.DatabaseError(message) from None

    async def _write_batch_on_thread(self, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """`write_batch` on the driver's own connection and thread (an in-memory database, which no
        other connection can open)."""
        translated = [(_translate(sql), rows) for sql, rows in steps if rows]

        def _run(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in translated:
                    c.executemany(sql, rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        async with self._lock:
            await self._call(_run)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._writer is not None and self._writer_thread is not None:
            writer, self._writer = self._writer, None
            # On the writer's thread: after a write still running there.
            await self._writer_thread.run(writer.close)
        if self._writer_thread is not None:
            self._writer_thread.stop()
            self._writer_thread = None
        if self._conn is not None and self._thread is not None:
            conn, self._conn = self._conn, None
            await self._thread.run(conn.close)
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
