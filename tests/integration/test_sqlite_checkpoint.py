"""Under steady writes the WAL stays bounded: PASSIVE checkpoints alone never let a writer find the WAL
fully copied, so it grew without end (350 MB in 8 s at 1,000 trades/s) until a commit truncated it
inline. Past `RESTART_WAL_BYTES` the checkpointer restarts it. Thresholds are scaled down here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dragonfly.storage.sql import open_database
from dragonfly.storage.sql import sqlite as driver

ROW = "x" * 3000  # about one page per row


async def _max_wal_during_writes(path: Path, seconds: float) -> int:
    db = await open_database(f"sqlite:///{path}")
    wal = f"{path}-wal"
    biggest = 0
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await db.write_batch([("INSERT INTO filler (body) VALUES ($1)", [(ROW,)] * 8)])
            await asyncio.sleep(0.001)  # keep committing, the way settlements do
            biggest = max(biggest, os.stat(wal).st_size)
    finally:
        await db.close()
    return biggest


@pytest.mark.parametrize("restart_bytes", [256 * 1024])
async def test_wal_stays_bounded_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart_bytes: int
) -> None:
    monkeypatch.setattr(driver, "CHECKPOINT_EVERY_S", 0.05)
    monkeypatch.setattr(driver, "RESTART_WAL_BYTES", restart_bytes)
    bounded = await _max_wal_during_writes(tmp_path / "bounded.sqlite", 1.5)
    # The same writes with restarts out of reach: the WAL only grows.
    monkeypatch.setattr(driver, "RESTART_WAL_BYTES", 1 << 40)
    unbounded = await _max_wal_during_writes(tmp_path / "unbounded.sqlite", 1.5)
    assert unbounded > 4 * bounded, (bounded, unbounded)
    assert bounded < 16 * restart_bytes


async def test_a_failed_checkpoint_does_not_stop_the_checkpointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "CHECKPOINT_EVERY_S", 0.02)
    real_one = driver._one
    calls = {"failed": 0, "ok": 0}

    def flaky(conn: object, sql: str) -> tuple[object, ...]:
        if "wal_checkpoint" in sql:
            if calls["failed"] < 3:
                calls["failed"] += 1
                raise driver.sqlite3.OperationalError("disk I/O error")
            calls["ok"] += 1
        return real_one(conn, sql)  # type: ignore[arg-type]

    monkeypatch.setattr(driver, "_one", flaky)
    await _max_wal_during_writes(tmp_path / "flaky.sqlite", 0.6)
    assert calls["failed"] == 3
    assert calls["ok"] >= 1  # it went on checkpointing after the failures
