"""SQLite `write_batch` (the settlement batch, run inline on the event loop): other work gets a turn between
its statements, and yet readers see a batch whole or not at all, and a batch that fails or is cancelled
part-way leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragonfly.storage.ports import UniqueViolation
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.sqlite import SqliteDatabase

INSERT = "INSERT INTO t (id, v) VALUES ($1, $2)"
STEPS = 5  # the settlement batch has five: trades, journals, entries, balances, key spend


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await open_database(f"sqlite:///{tmp_path}/batch.sqlite")
    assert isinstance(database, SqliteDatabase)
    await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    try:
        yield database
    finally:
        await database.close()


def _steps(first_id: int) -> list[tuple[str, list[tuple[object, ...]]]]:
    return [(INSERT, [(first_id + 10 * s + i, f"row {s}.{i}") for i in range(10)]) for s in range(STEPS)]


async def _count(db: SqliteDatabase) -> int:
    return int(await db.fetch_val("SELECT COUNT(*) FROM t"))


async def test_the_event_loop_turns_between_the_statements_of_a_batch(db: SqliteDatabase) -> None:
    turns = 0
    running = True

    async def other_requests() -> None:
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other_requests())
    await asyncio.sleep(0)
    before = turns
    await db.write_batch(_steps(0))
    during = turns - before
    running = False
    await ticker
    # One turn before each statement and one before COMMIT: a request that arrived during the batch
    # waits for one statement, not for all of them.
    assert during >= STEPS
    assert await _count(db) == STEPS * 10


async def test_a_reader_during_a_batch_sees_all_of_it(db: SqliteDatabase) -> None:
    batch = asyncio.ensure_future(db.write_batch(_steps(0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not batch.done()  # the batch is part-way through its statements
    seen = await _count(db)  # waits for the batch: never half of it
    assert batch.done()
    assert seen == STEPS * 10


async def test_a_batch_cancelled_part_way_leaves_nothing_and_the_next_one_commits(db: SqliteDatabase) -> None:
    batch = asyncio.ensure_future(db.write_batch(_steps(0)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not batch.done()
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert await _count(db) == 0  # rolled back: no transaction left open on the connection
    await db.write_batch(_steps(1000))
    assert await _count(db) == STEPS * 10


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
