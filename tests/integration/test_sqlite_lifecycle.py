"""SQLite driver life cycle under churn: opening and closing databases while the background checkpointer
and the statement thread are busy must never use one connection from two threads at once.

Runs in a subprocess, so a crash of the interpreter (what such a race does: it segfaulted a CI run) fails
this test instead of killing the test session. With the bug, 400 cycles crashed in most runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from dragonfly.storage.sql import open_database
    from dragonfly.storage.sql import sqlite as driver

    driver.CHECKPOINT_EVERY_S = 0.0005  # checkpoint nearly all the time, so close() races one

    async def main(directory):
        for i in range(400):
            db = await open_database(f"sqlite:///{directory}/db{i % 3}.sqlite")
            for _ in range(10):
                await db.execute("UPDATE change_seq SET seq = seq + 1 WHERE id = 1")
                await asyncio.sleep(0.0003)
            if i % 7 == 0:  # a read cancelled while it runs on the statement thread
                task = asyncio.ensure_future(db.fetch_val("SELECT COUNT(*) FROM change_seq"))
                await asyncio.sleep(0)
                task.cancel()
            await db.close()

    asyncio.run(main(sys.argv[1]))
    print("ok")
    """
)


def test_open_write_close_churn_with_checkpoints_does_not_crash(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "ok"
