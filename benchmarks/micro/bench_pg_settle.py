"""One trade's settlement on PostgreSQL at concurrency 1: what a non-streamed request waits for before its
last byte in PostgreSQL + Redis mode, against the floor of one round trip, measured in the same run.

Cases, interleaved over rounds, each on the same throwaway cluster (fsync off, like the load harness) and
its own migrated database:

- **round trip (floor)**: `SELECT 1` through the same asyncpg pool: one round trip, nothing written;
- **transaction (before)**: the batch as it was until this change: BEGIN, the five columnar statements
  (`columnar`), COMMIT, and asyncpg's default reset query when the connection goes back to the pool
  (eight round trips);
- **one statement (now)**: `settle_batch` as it is: the five parts as data-modifying CTEs of one
  statement with one jsonb parameter (`one_statement`), no BEGIN/COMMIT, the pool's reset without a
  query (one round trip).

Printed per case: p50 / p90 / p99 wall time per trade (µs), the ratio of its p50 to the floor's, the
client's CPU per trade (the benchmark process: row building, asyncpg encoding, protocol handling), and
the longest slice the settlement holds the event loop for (median over trades of each trade's longest
stretch between two suspensions, in the loop thread's CPU time).

Run: `python -m benchmarks.micro.bench_pg_settle [--trades 2000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Coroutine, Generator
from typing import Any

import asyncpg

from benchmarks.load import services
from benchmarks.micro.bench_settlement_stall import _trade
from dragonfly.storage.sql.connect import open_database
from dragonfly.storage.sql.repos.settlement import columnar, fast_settlement_steps, settle_batch

FLOOR = "round trip (floor)"
BEFORE = "transaction (before)"
NOW = "one statement (now)"


async def _before(pool: asyncpg.Pool, batch: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for sql, rows in columnar(fast_settlement_steps(batch)):
            await conn.executemany(sql, rows)


class _Sliced:
    """Awaits a coroutine step by step and keeps the longest step: the longest stretch it held the event
    loop between two suspensions (loop-thread CPU time, µs)."""

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.coro = coro
        self.longest = 0.0

    def __await__(self) -> Generator[Any, Any, None]:
        value: Any = None
        while True:
            t0 = time.thread_time_ns()
            try:
                future = self.coro.send(value)
            except StopIteration:
                self.longest = max(self.longest, (time.thread_time_ns() - t0) / 1000)
                return
            self.longest = max(self.longest, (time.thread_time_ns() - t0) / 1000)
            value = yield future


async def _case(name: str, url: str, trades: int) -> dict[str, float]:
    db = await open_database(url, pool_size=1)
    # The "before" case gets a pool with asyncpg's default reset, as the driver had it.
    plain = await asyncpg.create_pool(url, min_size=1, max_size=1) if name == BEFORE else None
    try:

        async def one() -> None:
            batch = [_trade()]
            if name == FLOOR:
                await db.fetch_val("SELECT 1")
            elif name == BEFORE:
                assert plain is not None
                await _before(plain, batch)
            else:
                assert await settle_batch(db, batch) == [None]

        for _ in range(50):  # warm up: statements prepared, array types looked up
            await one()
        walls, slices = [], []
        cpu0 = time.process_time()
        for _ in range(trades):
            t0 = time.perf_counter_ns()
            step = _Sliced(one())
            await step
            walls.append((time.perf_counter_ns() - t0) / 1000)
            slices.append(step.longest)
        cpu = (time.process_time() - cpu0) / trades * 1e6
    finally:
        if plain is not None:
            await plain.close()
        await db.close()
    q = statistics.quantiles(walls, n=100)
    longest = statistics.median(slices)
    return {"p50": statistics.median(walls), "p90": q[89], "p99": q[98], "cpu": cpu, "slice": longest}


async def main(trades: int, rounds: int) -> None:
    print(
        f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" Python {platform.python_version()}, asyncpg {asyncpg.__version__};"
        f" {trades} trades per case, {rounds} interleaved rounds (medians)"
    )
    pg = services.postgres_cluster()
    cases = [FLOOR, BEFORE, NOW]
    results: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
    try:
        for r in range(rounds):
            for case in cases if r % 2 == 0 else cases[::-1]:
                results[case].append(await _case(case, pg.url(pg.create_database()), trades))
    finally:
        pg.stop()
    floor = statistics.median(x["p50"] for x in results[FLOOR])
    print("| case | p50 µs | p90 | p99 | p50 / floor | client CPU µs per trade | longest loop slice µs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        med = {k: statistics.median(x[k] for x in results[case]) for k in results[case][0]}
        print(
            f"| {case} | {med['p50']:,.0f} | {med['p90']:,.0f} | {med['p99']:,.0f}"
            f" | {med['p50'] / floor:.2f}× | {med['cpu']:,.0f} | {med['slice']:,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.trades, args.rounds))
