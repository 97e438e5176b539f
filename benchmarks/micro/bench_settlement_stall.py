"""How long settlement holds the event loop: the gaps a request task sees between two turns of the loop
while the settlement writer commits trades behind it, on SQLite in settlement-log mode (the embedded
default), against baselines measured in the same run.

Cases, each on a fresh migrated database and settlement log, same trades, same rate:

- **no settlement**: the request task alone (the loop's own overhead between two turns);
- **inline (before)**: the batch run on the event loop, as the SQLite driver did it until this change — one
  statement per turn of the loop, then COMMIT — kept here verbatim in logic as `inline_write_batch`;
- **native (now)**: `SqliteDatabase.write_batch` as it is: rows converted on the loop a slice at a time,
  the transaction on the native batch writer's thread with the GIL released.

The request task settles trades at the offered rate (`SettlementWriter.settle`: the log append, as a
request does) and yields after each step; the gap is the time from its yield to its next turn — what any
request on that loop would wait at that moment. A gap is the longest synchronous slice of everything
else that ran in between (the writer's batch building, its conversion or its statements), plus the loop's
own overhead (the first case). A wall-clock gap also holds the times the OS ran another process (the
"no settlement" case shows how often on this machine), so each gap is also measured in the loop thread's
own CPU time (`time.thread_time`), which leaves those out. The target (issue 19): no stall from
settlement above 200 µs, at any load.

With `--postgres`, a fourth case: PostgreSQL (a throwaway cluster, fsync off) in database mode, where each
request awaits the group commit (settlements are started as concurrent tasks); there the loop's share is
building the rows, the batch's jsonb document (`one_statement`) and asyncpg's encoding of it.

Run: `python -m benchmarks.micro.bench_settlement_stall [--rates 1000,4000] [--seconds 3] [--postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Generator
from typing import Any

from dragonfly.domain.ledger import Posting, trade_postings
from dragonfly.domain.money import TradeCost
from dragonfly.gateway.app import tune_gc
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.ids import new_id
from dragonfly.storage.ports import UniqueViolation
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos.trades import TradeRow
from dragonfly.storage.sql.settlement_log import SettlementLog
from dragonfly.storage.sql.sqlite import SqliteDatabase, _translate

try:
    import uvloop
except ImportError:  # pragma: no cover - the data plane runs uvloop; the figures say which loop ran
    uvloop = None  # type: ignore[assignment]

COST = TradeCost(charge=300, payout=255, reserve=0, fee=45, rounding=0)
TARGET_US = 200.0
POSTGRES = "postgres (database mode)"


class _GcPauses:
    """A `gc.callbacks` hook: how many collections ran (and of the oldest generation), and the longest,
    so a gap the garbage collector made is told apart from one settlement made."""

    def __init__(self) -> None:
        self.collections = 0
        self.gen2 = 0
        self.longest = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        self.collections += 1
        self.gen2 += info["generation"] == 2
        self.longest = max(self.longest, time.perf_counter() - self._t0)


def _trade() -> tuple[TradeRow, list[Posting]]:
    now = time.time_ns() // 1_000_000
    row = TradeRow(
        id=new_id(),
        buyer_account_id="acct_buyer",
        key_id="key_1",
        model="demo/echo-1",
        upstream_model="echo-1",
        listing_id="lst_1",
        seller_account_id="acct_seller",
        provider="demo",
        streamed=False,
        status="completed",
        finish_reason="stop",
        error_code=None,
        latency_ms=1,
        ttft_ms=1,
        tokens_prompt=20,
        tokens_completion=10,
        tokens_cached=0,
        native_tokens_prompt=20,
        native_tokens_completion=10,
        counted_tokens_completion=10,
        usage_audit="ok",
        hold_micros=10_000,
        cost_micros=300,
        seller_payout_micros=255,
        platform_fee_micros=45,
        attempts='[{"listing_id":"lst_1","status":"ok"}]',
        created_at=now,
        settled_at=now,
    )
    return row, trade_postings("acct_buyer", "acct_seller", COST)


async def inline_write_batch(db: SqliteDatabase, steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    """The driver's `write_batch` before the native writer: the transaction on the event loop, a turn of
    the loop before each statement and before COMMIT (the database-thread fallback for a locked
    database left out: nothing else writes here)."""
    conn = db._conn
    assert conn is not None
    translated = [(_translate(sql), rows) for sql, rows in steps if rows]

    def transaction(c: sqlite3.Connection) -> Generator[None, None, None]:
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

    async with db._lock:
        tx = transaction(conn)
        try:
            for _ in tx:
                await asyncio.sleep(0)
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from None
        finally:
            tx.close()


async def _case(name: str, rate: int, seconds: float, directory: str, pg: Any) -> dict[str, Any]:
    path = tempfile.mkdtemp(dir=directory)
    writer: SettlementWriter | None = None
    database = pg.url(pg.create_database()) if name == POSTGRES else f"sqlite:///{path}/bench.db"
    db = await open_database(database)
    if name == POSTGRES:
        writer = SettlementWriter(db)  # the database commit is the durable point: settle awaits it
        await writer.start()
    elif name != "no settlement":
        assert isinstance(db, SqliteDatabase)
        if name == "inline (before)":
            sqlite_db = db

            async def write(steps: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
                await inline_write_batch(sqlite_db, steps)

            db.write_batch = write  # type: ignore[method-assign]
        writer = SettlementWriter(db, SettlementLog(f"{path}/settlement.log"))
        await writer.start()
    if writer is not None:
        # Warm up: statements prepared (asyncpg also looks up the array types once), caches filled.
        await asyncio.gather(*(writer.settle(*_trade()) for _ in range(64)))
        await writer.flush(timeout_s=60.0)
    trades = [_trade() for _ in range(int(rate * seconds) + 1)]
    tune_gc()  # as a data-plane worker does after start-up: the prepared trades are not scanned again
    settle: Callable[[TradeRow, list[Posting]], Any] | None = writer.settle if writer else None
    # Requests awaiting their commit (PostgreSQL): a request's task is gone once its commit is, as in
    # the gateway, so a finished one is dropped here too (kept, 12,000 finished tasks and their frames
    # would reach the oldest GC generation and put the collector's pauses into the gaps).
    waiting: set[asyncio.Future[None]] = set()
    gaps = array("d")
    cpu_gaps = array("d")
    gc_pauses = _GcPauses()
    gc.callbacks.append(gc_pauses)
    n = 0
    start = last = time.perf_counter()
    last_cpu = time.thread_time()
    while True:
        now, now_cpu = time.perf_counter(), time.thread_time()
        gaps.append(now - last)
        cpu_gaps.append(now_cpu - last_cpu)
        if now - start >= seconds:
            break
        due = min(len(trades), int((now - start) * rate))
        while n < due:
            if settle is not None:
                if name == POSTGRES:  # concurrent requests, each awaiting its commit
                    fut = asyncio.ensure_future(settle(*trades[n]))
                    waiting.add(fut)
                    fut.add_done_callback(waiting.discard)
                else:
                    await settle(*trades[n])  # the log append: returns at once
            n += 1
        last, last_cpu = time.perf_counter(), time.thread_time()
        await asyncio.sleep(0)
    gc.callbacks.remove(gc_pauses)
    uncommitted = writer.uncommitted if writer else 0
    if waiting:
        uncommitted = sum(1 for w in waiting if not w.done())
        await asyncio.gather(*waiting)
    t_flush = time.perf_counter()
    if writer is not None:
        await writer.flush(timeout_s=60.0)
        batches, committed = writer.batches, writer.trades
        await writer.close()
    else:
        batches = committed = 0
    flush_ms = (time.perf_counter() - t_flush) * 1000
    await db.close()
    us = sorted(g * 1e6 for g in gaps[1:])
    cpu_us = sorted(g * 1e6 for g in cpu_gaps[1:])

    def pct(p: float) -> float:
        return us[min(len(us) - 1, int(p / 100 * len(us)))]

    return {
        "case": name,
        "rate": rate,
        "settled": n if writer else 0,
        "committed": committed,
        "batches": batches,
        "uncommitted_at_end": uncommitted,
        "flush_ms": flush_ms,
        "turns": len(us),
        "p50": statistics.median(us),
        "p99": pct(99),
        "p999": pct(99.9),
        "max": us[-1],
        "over_target": sum(1 for g in us if g > TARGET_US),
        "cpu_max": cpu_us[-1],
        "cpu_over_target": sum(1 for g in cpu_us if g > TARGET_US),
        "gc_collections": gc_pauses.collections,
        "gc_gen2": gc_pauses.gen2,
        "gc_max_us": gc_pauses.longest * 1e6,
    }


async def main(rates: list[int], seconds: float, rounds: int, postgres: bool) -> None:
    directory = tempfile.mkdtemp(prefix="bench-stall-")
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, loop {loop_name}, "
        f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"# {seconds:g} s per case, {rounds} interleaved rounds (the worst round's max, the median's rest)")
    cases = ["no settlement", "inline (before)", "native (now)"]
    pg = None
    if postgres:
        from benchmarks.load import services

        pg = services.postgres_cluster()
        cases.append(POSTGRES)
    print(
        "| trades/s | case | turns | gap p50 µs | p99 | p99.9 | max | gaps > 200 µs "
        "| loop-thread CPU in a gap: max µs | CPU gaps > 200 µs | batches | uncommitted at end "
        "| GC collections (oldest generation) | longest GC µs |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
        for r in range(rounds):
            order = cases if r % 2 == 0 else cases[::-1]
            for case in order:
                results[case].append(await _case(case, rate, seconds, directory, pg))
        for case in cases:
            runs = results[case]
            med = {k: statistics.median(x[k] for x in runs) for k in ("turns", "p50", "p99", "p999")}
            worst = max(x["max"] for x in runs)
            over = sum(x["over_target"] for x in runs)
            cpu_worst = max(x["cpu_max"] for x in runs)
            cpu_over = sum(x["cpu_over_target"] for x in runs)
            batches = sum(x["batches"] for x in runs)
            left = max(x["uncommitted_at_end"] for x in runs)
            collections = sum(x["gc_collections"] for x in runs)
            gen2 = sum(x["gc_gen2"] for x in runs)
            gc_worst = max(x["gc_max_us"] for x in runs)
            print(
                f"| {rate:,} | {case} | {med['turns']:,.0f} | {med['p50']:.1f} | {med['p99']:.1f} "
                f"| {med['p999']:.1f} | {worst:.0f} | {over} | {cpu_worst:.0f} | {cpu_over} | {batches} "
                f"| {left} | {collections} ({gen2}) | {gc_worst:.0f} |"
            )
    if pg is not None:
        pg.stop()
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(directory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,4000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres", action="store_true", help="also PostgreSQL (a throwaway cluster), database mode"
    )
    args = parser.parse_args()
    run = main([int(r) for r in args.rates.split(",")], args.seconds, args.rounds, args.postgres)
    if uvloop is not None:
        uvloop.run(run)
    else:
        asyncio.run(run)
    sys.exit(0)
