"""Group commit of settled trades (ARCHITECTURE.md, request life cycle step 7).

Two durable points, chosen by the runtime:

- **database** (PostgreSQL, or SQLite shared with other instances): `settle` returns once the trade is
  committed; concurrent settlements share one transaction (one transaction per request caps a process
  near 1k req/s).
- **settlement log** (the embedded default: SQLite and the in-process state store, one worker): `settle`
  appends the trade to `SettlementLog` — durable against a crash once written — and returns at once;
  this writer commits the log's trades to the database in the background, in batches of up to
  `LOG_BATCH` gathered over `BATCH_WAIT_S`. Readers that must see every trade (receipts, re-seeding the
  state store, the control plane behind the gateway) call `flush()` first. While the database is down or
  locked the writer keeps trying (up to `MAX_UNCOMMITTED` trades wait; past that `settle` refuses); a
  trade the database refuses for what it is moves to the log's refused file for a person to look at.

A trade and its journal commit together; both are idempotent by request id, so a replay is harmless.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass

from dragonfly.domain.ledger import Posting
from dragonfly.logsampling import worth_logging
from dragonfly.storage.ports import CommitOutcomeUnknown, Database, DatabaseUnavailable
from dragonfly.storage.sql.repos import trades
from dragonfly.storage.sql.repos.settlement import settle_batch
from dragonfly.storage.sql.settlement_log import Entry, SettlementLog, refused_path_for

log = logging.getLogger("dragonfly.gateway.settlement")

MAX_BATCH = 256
# Log mode: trades per batch. Bounded below MAX_BATCH because what a committed batch leaves to free (its
# rows, as Python tuples and as the native batch) is freed in one slice of the event loop: ~200 trades at
# 4,000 trades/s held it 200–370 µs (`bench_settlement_stall`), 64 stay under ~100. A COMMIT shared by 64
# trades is ~2 µs of each.
LOG_BATCH = 64
# Log mode: how long the first trade of a batch waits for company. Nobody waits on the commit (readers
# flush, which cuts the wait short), so a longer wait only means bigger batches, cheaper per trade: a
# COMMIT costs SQLite ~135 µs whatever the batch (the WAL frames of the ~17 pages a batch dirties), a
# trade ~25 µs to execute (`benchmarks/micro/bench_settlement.py`). 50 ms instead of 5 ms: 7–10 % less
# of the embedded data plane's CPU per request at ~1,000 req/s (batches of ~50 instead of ~5); unloaded
# p50 and p99 unchanged only because the native writer yields its core every 100 µs of rows (without
# that, p99 doubled). Paired A/B and latency-ab, 2026-12-07: benchmarks/README.md.
BATCH_WAIT_S = 0.05
# Log mode: pauses between tries while the database is down or locked (the last one repeats).
RETRY_PAUSES_S = (0.05, 0.25, 1.0)
# Database mode: pauses between makings-again of trades whose commit's outcome was lost with the
# connection (`_resolve`); ~5 s in all, during which their buyers wait and later trades queue.
RESOLVE_PAUSES_S = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0)
# Log mode: past this many trades waiting for the database, `settle` refuses (the request fails and
# costs nothing, as when the database itself is the durable point) rather than grow without bound.
MAX_UNCOMMITTED = 50_000
# Log mode: the longest a reader waits in `flush` before it reads what is committed.
FLUSH_TIMEOUT_S = 2.0
# Log mode: the log is emptied when everything in it is committed and it has grown past this.
RESET_BYTES = 1 << 20


@dataclass(slots=True)
class _Pending:
    trade: trades.TradeRow
    postings: list[Posting]
    done: asyncio.Future[None]


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _transient(exc: BaseException) -> bool:
    """A failure the database may recover from (locked, disk I/O, unreachable), not one of the trade."""
    return isinstance(exc, (sqlite3.OperationalError, DatabaseUnavailable, OSError))


def _kinds(results: list[BaseException | None]) -> str:
    return ", ".join(sorted({type(e).__name__ for e in results if e is not None}))


class SettlementWriter:
    def __init__(self, db: Database, settlement_log: SettlementLog | None = None) -> None:
        self._db = db
        self._log = settlement_log
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Log mode: trades appended and not yet committed, numbered by `_appended`.
        self._backlog: deque[Entry] = deque()
        self._appended = 0
        self._finished = 0  # every trade numbered up to here is committed (or set aside as refused)
        self._refused = 0  # refused by the database for what they are: moved to the refused file
        self._wake = asyncio.Event()  # the backlog is no longer empty
        self._hurry = False  # a reader is waiting: commit now
        self._nap: asyncio.Future[None] | None = None  # the batch's gathering time, cut short by a flush
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Counters for /healthz: how well group commit is grouping.
        self.batches = 0
        self.trades = 0
        # Database mode: trades whose commit's answer was lost with the connection (`_resolve`), and
        # those of them whose outcome stayed unknown (their buyers were told so).
        self.lost_in_commit = 0
        self.unconfirmed = 0

    @property
    def durable_point(self) -> str:
        return "settlement_log" if self._log is not None else "database"

    @property
    def uncommitted(self) -> int:
        """Log mode: trades durable in the log and not yet in the database."""
        return len(self._backlog)

    @property
    def refused(self) -> int:
        """Log mode: trades the database refused for what they are, set aside in the refused file."""
        return self._refused

    async def start(self) -> None:
        """Log mode: commit what a previous process left in the log, before anything reads the books."""
        if self._log is not None:
            left = self._log.open()
            if left:
                await self._recover(left)
        loop = asyncio.get_running_loop()
        run = self._run_log if self._log is not None else self._run
        self._task = loop.create_task(run(), name="settlement-writer")

    async def _recover(self, left: list[Entry]) -> None:
        assert self._log is not None
        for i in range(0, len(left), LOG_BATCH):
            await self._commit(left[i : i + LOG_BATCH])
        log.warning(
            "settlement log: %d trades left by a previous process committed", len(left) - self._refused
        )
        self._log.reset()

    async def settle(self, trade: trades.TradeRow, postings: list[Posting]) -> None:
        """Returns once the trade is durable (committed, or in the settlement log); raises if it is not."""
        if self._log is not None:
            if len(self._backlog) >= MAX_UNCOMMITTED:
                raise DatabaseUnavailable("settlement backlog full: the database is not taking writes")
            self._log.append(trade, postings)
            self._backlog.append((trade, postings))
            self._appended += 1
            if len(self._backlog) == 1:
                self._wake.set()
            elif len(self._backlog) >= LOG_BATCH and self._nap is not None:
                _wake_up(self._nap)  # a full batch need not wait
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(trade, postings, fut))
        # A cancelled waiter does not cancel the write: the trade is in the batch and commits anyway.
        await fut

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every trade settled before this call is in the database. False when that took
        longer than `timeout_s` (the database is refusing writes): the caller reads what is there."""
        target = self._appended
        if self._finished >= target:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._hurry = True
        self._wake.set()
        if self._nap is not None:
            _wake_up(self._nap)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
            return True
        except TimeoutError:
            log.warning("settlement: flush waited %.1f s for the database; reading without it", timeout_s)
            return False

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # One turn of the loop first: settlements already due in this turn join the same commit.
            await asyncio.sleep(0)
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            entries = [(p.trade, p.postings) for p in batch]
            try:
                try:
                    results = await settle_batch(self._db, entries)
                except Exception as exc:
                    results = [exc] * len(batch)
                if any(isinstance(r, CommitOutcomeUnknown) for r in results):
                    results = await self._resolve(entries, results)
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

    async def _resolve(
        self, batch: list[Entry], results: list[BaseException | None]
    ) -> list[BaseException | None]:
        """Find out whether the trades whose commit's outcome was lost with the connection committed, by
        making them again: settlement is idempotent by request id, so one that had committed is found
        (the fast batch's unique violation, then the guarded shape posts nothing twice) and one that had
        not commits now — either way exactly once, and the buyer's answer can say so. A database that
        stays unreachable for all of `RESOLVE_PAUSES_S` leaves them `CommitOutcomeUnknown`: their
        buyers are told the outcome is not known (never "not charged"), and the receipt shows it."""
        results = list(results)
        unknown = [i for i, r in enumerate(results) if isinstance(r, CommitOutcomeUnknown)]
        self.lost_in_commit += len(unknown)
        log.warning(
            "settlement: the connection was lost while %d trades committed; making them again", len(unknown)
        )
        for pause in RESOLVE_PAUSES_S:
            await asyncio.sleep(pause)
            try:
                again = await settle_batch(self._db, [batch[i] for i in unknown])
            except Exception as exc:
                again = [exc] * len(unknown)
            still = []
            for i, r in zip(unknown, again, strict=True):
                if r is not None and _transient(r):
                    still.append(i)  # unreachable again (or lost again): still not known
                else:
                    results[i] = r  # committed now or before (None), or refused for what it is
            unknown = still
            if not unknown:
                return results
        self.unconfirmed += len(unknown)
        log.error(
            "settlement: whether %d trades committed is not known (the database stayed unreachable)",
            len(unknown),
        )
        return results

    async def _run_log(self) -> None:
        assert self._log is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._backlog:
                continue
            if not self._hurry and len(self._backlog) < LOG_BATCH:
                # Nobody waits for this commit: let the batch fill for a few ms (a flush cuts it short).
                loop = asyncio.get_running_loop()
                self._nap = nap = loop.create_future()
                timer = loop.call_later(BATCH_WAIT_S, _wake_up, nap)
                try:
                    await nap
                finally:
                    timer.cancel()
                    self._nap = None
            self._hurry = False
            n = min(len(self._backlog), LOG_BATCH)
            await self._commit([self._backlog[i] for i in range(n)])
            for _ in range(n):
                self._backlog.popleft()
            self._finished += n
            self._wake_flushers()
            if self._backlog:
                # More arrived while committing: gather the next batch the same way, after a turn of
                # the loop (this batch's bookkeeping and the next one's first slice are two slices).
                self._wake.set()
                await asyncio.sleep(0)
            elif self._log.size > RESET_BYTES:
                self._log.reset()  # everything in it is committed (nothing ran since the check)

    async def _commit(self, batch: list[Entry]) -> None:
        """Commit a batch, waiting out a database that is down or locked; a trade the database refuses
        for what it is (a poison record) is found by committing the batch trade by trade, and moved to
        the log's refused file while the others commit."""
        results = await self._attempt(batch)
        if len(batch) > 1 and any(r is not None for r in results):
            results = [(await self._attempt([entry]))[0] for entry in batch]
        self.batches += 1
        self.trades += len(batch)
        failed = [entry for entry, r in zip(batch, results, strict=True) if r is not None]
        if failed:
            assert self._log is not None
            self._refused += len(failed)
            for trade, postings in failed:
                self._log.set_aside_entry(trade, postings)
            log.error(
                "settlement: %d of %d trades refused by the database (%s); set aside in %s",
                len(failed),
                len(batch),
                _kinds(results),
                refused_path_for(self._log.path),
            )

    async def _attempt(self, batch: list[Entry]) -> list[BaseException | None]:
        """`settle_batch` until no trade failed for a reason that may pass (idempotent, so a retry after
        a partial commit is harmless)."""
        for n in itertools.count():
            try:
                results = await settle_batch(self._db, batch)
            except Exception as exc:
                results = [exc] * len(batch)
            passing = [r for r in results if r is not None and _transient(r)]
            if not passing:
                return results
            if worth_logging(n + 1):
                kind = type(passing[0]).__name__
                log.warning(
                    "settlement: %d trades wait for the database (%s, try %d)", len(batch), kind, n + 1
                )
            await asyncio.sleep(RETRY_PAUSES_S[min(n, len(RETRY_PAUSES_S) - 1)])
        raise AssertionError("unreachable")

    def _wake_flushers(self) -> None:
        done = self._finished
        keep = []
        for target, fut in self._waiters:
            if target <= done:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    async def close(self) -> None:
        # Commit what is queued so every response already promised is in the database.
        if self._log is not None:
            await self.flush(timeout_s=30.0)
        else:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._log is not None:
            if not self._backlog:
                self._log.reset()
            self._log.close()
