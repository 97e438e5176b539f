"""Group commit of settled trades: each request awaits its own durable commit, but concurrent
settlements share one database transaction (one transaction per request caps a process near 1k req/s).

A trade and its journal commit together; both are idempotent by request id, so a replay is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from dragonfly.domain.ledger import Posting
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import trades
from dragonfly.storage.sql.repos.settlement import settlement_steps

log = logging.getLogger("dragonfly.gateway.settlement")

MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    trade: trades.TradeRow
    postings: list[Posting]
    done: asyncio.Future[None]


class SettlementWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="settlement-writer")

    async def settle(self, trade: trades.TradeRow, postings: list[Posting]) -> None:
        """Returns once the trade is durably committed; raises if the commit failed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(trade, postings, fut))
        # A cancelled waiter does not cancel the write: the trade is in the batch and commits anyway.
        await fut

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:
                log.error("settlement batch of %d failed: %s", len(batch), type(exc).__name__)
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc)
            else:
                for p in batch:
                    if not p.done.done():
                        p.done.set_result(None)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        await self._db.write_batch(settlement_steps([(p.trade, p.postings) for p in batch]))

    async def close(self) -> None:
        # Drain what is queued so every response already promised is committed.
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
