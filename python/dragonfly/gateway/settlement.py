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
from dragonfly.storage.sql.repos.settlement import settle_batch

log = logging.getLogger("dragonfly.gateway.settlement")

MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    trade: trades.TradeRow
    postings: list[Posting]
    done: asyncio.Future[None]


def _kinds(results: list[BaseException | None]) -> str:
    return ", ".join(sorted({type(e).__name__ for e in results if e is not None}))


class SettlementWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Counters for /healthz: how well group commit is grouping.
        self.batches = 0
        self.trades = 0

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
            # One turn of the loop first: settlements already due in this turn join the same commit.
            await asyncio.sleep(0)
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await settle_batch(self._db, [(p.trade, p.postings) for p in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
            self.batches += 1
            self.trades += len(batch)
            failed = 0
            for p, err in zip(batch, results, strict=True):
                if p.done.done():
                    continue
                if err is None:
                    p.done.set_result(None)
                else:
                    failed += 1
                    p.done.set_exception(err)
            if failed:
                log.error(
                    "settlement: %d of %d trades not committed: %s", failed, len(batch), _kinds(results)
                )

    async def close(self) -> None:
        # Drain what is queued so every response already promised is committed.
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
