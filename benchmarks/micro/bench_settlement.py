"""The settlement batch on SQLite (the embedded default): µs per trade to execute and to COMMIT, by batch
size. Baseline, measured in the same run on the same kind of file: random ids (UUIDv4) and the guarded
per-trade statements (what the gateway wrote before); then time-ordered ids (UUIDv7, what
`dragonfly.ids.new_id` makes) with the guarded statements; then UUIDv7 with the fast batch shape
(strict journals, balances and key spend summed per batch: what `settle_batch` tries first).

Run: `python benchmarks/micro/bench_settlement.py [directory]` (default: a temporary directory on the
disk the data dir would be on). Each case gets a fresh database with the real migrations; the trades,
journals and entries are what the gateway writes for a completed non-streamed request.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

from dragonfly.domain.ledger import trade_postings
from dragonfly.domain.money import TradeCost
from dragonfly.ids import new_id
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import settlement
from dragonfly.storage.sql.repos.trades import TradeRow
from dragonfly.storage.sql.sqlite import SqliteDatabase, _translate

BATCHES = (1, 4, 16, 64)
TRADES_PER_CASE = 4096
COST = TradeCost(charge=300, payout=255, reserve=0, fee=45, rounding=0)


def _trade(make_id: Callable[[], str]) -> TradeRow:
    now = time.time_ns() // 1_000_000
    return TradeRow(
        id=make_id(),
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


Shape = Callable[[settlement.Batch], settlement.Steps]
CASES: list[tuple[str, Callable[[], str], Shape]] = [
    ("v4 guarded", lambda: str(uuid.uuid4()), settlement.settlement_steps),
    ("v7 guarded", new_id, settlement.settlement_steps),
    ("v7 fast", new_id, settlement.fast_settlement_steps),
]


async def _case(directory: str, make_id: Callable[[], str], shape: Shape, batch: int) -> tuple[float, float]:
    """(execute µs/trade, commit µs/trade) over TRADES_PER_CASE trades in batches of `batch`."""
    path = tempfile.mkdtemp(dir=directory)
    db = await open_database(f"sqlite:///{path}/bench.db")
    assert isinstance(db, SqliteDatabase)
    conn: sqlite3.Connection | None = db._conn
    assert conn is not None
    # The journal ids come from `new_id` inside settlement_steps: make them the case's kind too.
    original = settlement.new_id
    settlement.new_id = make_id
    t_exec = t_commit = 0.0
    try:
        for _ in range(TRADES_PER_CASE // batch):
            rows = [
                (_trade(make_id), trade_postings("acct_buyer", "acct_seller", COST)) for _ in range(batch)
            ]
            steps = [(_translate(sql), r) for sql, r in shape(rows) if r]
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            for sql, r in steps:
                conn.executemany(sql, r)
            t1 = time.perf_counter()
            conn.execute("COMMIT")
            t_exec += t1 - t0
            t_commit += time.perf_counter() - t1
    finally:
        settlement.new_id = original
        await db.close()
    return t_exec / TRADES_PER_CASE * 1e6, t_commit / TRADES_PER_CASE * 1e6


async def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else tempfile.gettempdir()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, files in {directory}"
    )
    print(f"# {TRADES_PER_CASE} completed trades per case; µs per trade; best of 3 rounds")
    head = " | ".join(f"{name} exec | {name} commit" for name, _, _ in CASES)
    print(f"| batch | {head} | baseline / v7 fast |")
    print("|---:|" + "---:|" * (2 * len(CASES) + 1))
    for batch in BATCHES:
        best: dict[str, tuple[float, float]] = {}
        for _ in range(3):  # interleaved, so drift on a shared machine hits every case alike
            for name, make, shape in CASES:
                got = await _case(directory, make, shape, batch)
                if name not in best or sum(got) < sum(best[name]):
                    best[name] = got
        cells = " | ".join(f"{best[n][0]:.1f} | {best[n][1]:.1f}" for n, _, _ in CASES)
        ratio = sum(best[CASES[0][0]]) / sum(best[CASES[-1][0]])
        print(f"| {batch} | {cells} | {ratio:.2f}× |")


if __name__ == "__main__":
    asyncio.run(main())
