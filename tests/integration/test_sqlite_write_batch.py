"""SQLite `write_batch` (the settlement batch) on a file database: committed by the native batch writer
on its own connection and thread, so the event loop keeps turning while the transaction runs; readers
see a batch whole or not at all; a batch that fails part-way leaves nothing behind; SQLite's errors come
back as the driver's (UniqueViolation, IntegrityError, OperationalError for a lock that outlasts the
timeout). An in-memory database, which no second connection can open, writes on the driver's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragonfly.native.sqlite_batch import SqliteBatch, SqliteBatchWriter, SqliteWriteError, error_kind
from dragonfly.storage.ports import UniqueViolation
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql import sqlite as sqlite_driver
from dragonfly.storage.sql.sqlite import SqliteDatabase

INSERT = "INSERT INTO t (id, v) VALUES ($1, $2)"
STEPS = 5  # the settlement batch has five: trades, journals, entries, balances, key spend


async def _open(url: str) -> SqliteDatabase:
    database = await open_database(url)
    assert isinstance(database, SqliteDatabase)
    await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await _open(f"sqlite:///{tmp_path}/batch.sqlite")
    try:
        yield database
    finally:
        await database.close()


def _steps(first_id: int, rows: int = 10) -> list[tuple[str, list[tuple[object, ...]]]]:
    return [(INSERT, [(first_id + rows * s + i, f"row {s}.{i}") for i in range(rows)]) for s in range(STEPS)]


async def _count(db: SqliteDatabase) -> int:
    return int(await db.fetch_val("SELECT COUNT(*) FROM t"))


async def test_a_file_database_writes_batches_on_the_native_writer(db: SqliteDatabase) -> None:
    assert db._writer is not None
    await db.write_batch(_steps(0))
    assert await _count(db) == STEPS * 10


async def _longest_turn_while_a_large_batch_commits(db: SqliteDatabase, first_id: int) -> float:
    turns = 0
    longest = 0.0
    running = True

    async def other_requests() -> None:
        nonlocal turns, longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            turns += 1
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.ensure_future(other_requests())
    await asyncio.sleep(0)
    before = turns
    await db.write_batch(_steps(first_id, rows=4000))  # 20,000 rows: tens of ms of SQLite work
    during = turns - before
    running = False
    await ticker
    # Conversion lets the loop turn every LOOP_SLICE_S (50 µs): 80,000 parameters at 0.1-0.2 µs each are
    # 160 turns or more; the transaction itself runs on the writer's thread while the loop goes on turning.
    assert during >= 40
    return longest


async def test_the_event_loop_turns_while_a_large_batch_commits(db: SqliteDatabase) -> None:
    # Wall time, so a busy machine (the suite runs a worker per core) can stall any one attempt: a
    # commit that held the GIL would stall every attempt for its whole length.
    gaps = []
    for attempt in range(3):
        gaps.append(await _longest_turn_while_a_large_batch_commits(db, attempt * STEPS * 4000))
        if gaps[-1] < 0.05:
            break
    assert await _count(db) == len(gaps) * STEPS * 4000
    assert min(gaps) < 0.05, (
        f"the longest turn of the loop in each attempt: {[f'{g * 1000:.1f} ms' for g in gaps]}"
    )


async def test_a_reader_during_a_batch_sees_none_of_it_or_all_of_it(db: SqliteDatabase) -> None:
    batch = asyncio.ensure_future(db.write_batch(_steps(0, rows=2000)))
    seen = set()
    while not batch.done():
        seen.add(await _count(db))
    await batch
    seen.add(await _count(db))
    assert seen <= {0, STEPS * 2000}
    assert STEPS * 2000 in seen


async def test_a_unique_violation_in_a_later_statement_rolls_back_the_earlier_ones(
    db: SqliteDatabase,
) -> None:
    await db.write_batch([(INSERT, [(7, "already there")])])
    steps = _steps(100)
    steps[-1] = (INSERT, [(7, "a replay")])
    with pytest.raises(UniqueViolation):
        await db.write_batch(steps)
    assert await _count(db) == 1
    await db.write_batch(_steps(200))
    assert await _count(db) == 1 + STEPS * 10


async def test_a_refused_row_is_an_integrity_error_and_leaves_nothing(db: SqliteDatabase) -> None:
    steps = _steps(0)
    steps[2] = (INSERT, [(999, None)])  # v is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        await db.write_batch(steps)
    assert await _count(db) == 0


async def test_a_write_lock_held_past_the_timeout_is_an_operational_error_then_the_batch_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "BUSY_TIMEOUT_MS", 100)
    db = await _open(f"sqlite:///{tmp_path}/locked.sqlite")
    other = sqlite3.connect(tmp_path / "locked.sqlite", isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction
        with pytest.raises(sqlite3.OperationalError):  # transient: the settlement writer tries again
            await db.write_batch(_steps(0))
        # Released while the batch waits on its own thread: the batch waits, the loop does not.
        threading.Timer(0.05, lambda: other.execute("COMMIT")).start()
        await db.write_batch(_steps(0))
        assert await _count(db) == STEPS * 10
    finally:
        other.close()
        await db.close()


async def test_a_batch_cancelled_while_converting_leaves_nothing(db: SqliteDatabase) -> None:
    batch = asyncio.ensure_future(db.write_batch(_steps(0, rows=2000)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not batch.done()  # still converting its rows, a slice per turn
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert await _count(db) == 0
    await db.write_batch(_steps(100_000))
    assert await _count(db) == STEPS * 10


async def test_an_in_memory_database_writes_on_the_driver_thread() -> None:
    db = await _open("sqlite:///:memory:")
    try:
        assert db._writer is None
        await db.write_batch(_steps(0))
        with pytest.raises(UniqueViolation):
            await db.write_batch(_steps(0))
        assert await _count(db) == STEPS * 10
    finally:
        await db.close()


def test_the_native_batch_takes_the_parameter_types_python_sqlite3_takes(tmp_path: Path) -> None:
    path = tmp_path / "types.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE v (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT, t INTEGER)")
    writer = SqliteBatchWriter(str(path), 1000)
    batch = SqliteBatch()
    batch.add(
        "INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5, ?6)", [(2**62, 0.25, "ünï", b"\x00\x01", None, True)]
    )
    assert batch.values == 6
    writer.write(batch)
    assert batch.values == 0  # taken by the write
    assert conn.execute("SELECT * FROM v").fetchall() == [(2**62, 0.25, "ünï", b"\x00\x01", None, 1)]
    with pytest.raises(TypeError):
        batch.add("INSERT INTO v (i) VALUES (?1)", [(object(),)])
    with pytest.raises(OverflowError):
        batch.add("INSERT INTO v (i) VALUES (?1)", [(2**64,)])
    bad = SqliteBatch()
    bad.add("INSERT INTO nowhere VALUES (?1)", [(1,)])
    with pytest.raises(SqliteWriteError) as err:
        writer.write(bad)
    assert error_kind(err.value)[0] == "other"
    writer.close()
    closed = SqliteBatch()
    closed.add("INSERT INTO v (i) VALUES (?1)", [(1,)])
    with pytest.raises(RuntimeError):
        writer.write(closed)
    conn.close()
