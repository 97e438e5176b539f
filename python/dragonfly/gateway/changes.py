"""Wake the data plane when the control plane changed something its snapshot holds.

On PostgreSQL a trigger announces every change-sequence bump on the channel `dragonfly_changes`
(migration 008); one dedicated connection per worker LISTENs and wakes the snapshot poll at once, so a
key, profile or listing change reaches every instance in milliseconds. The poll (every 0.5 s) stays as
the fallback: a lost listener connection is reopened in the background and costs at most one poll
interval. On SQLite there is no channel and `wait` is a plain sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("dragonfly.gateway.changes")

CHANNEL = "dragonfly_changes"
RECONNECT_S = 2.0


class ChangeListener:
    def __init__(self, database_url: str) -> None:
        self._url = database_url if database_url.startswith(("postgres://", "postgresql://")) else None
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self.notifications = 0
        self.reconnects = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        if self._url is None:
            return
        with contextlib.suppress(Exception):  # the background task keeps trying
            await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep_connected(), name="change-listener")

    async def _connect(self) -> None:
        import asyncpg  # only on PostgreSQL deployments

        conn = await asyncpg.connect(self._url)
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn
        self._event.set()  # changes made while we were not listening: check once

    def _notified(self, *_args: Any) -> None:
        self.notifications += 1
        self._event.set()

    async def _keep_connected(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_S)
            if self.listening:
                continue
            try:
                await self._connect()
                self.reconnects += 1
            except Exception as exc:
                log.warning("change listener cannot connect: %s", type(exc).__name__)

    async def wait(self, timeout_s: float) -> None:
        """Until a change is announced or `timeout_s` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
        self._event.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
