"""The operator's routing weights per built-in strategy (table `strategy_weights`, migration 006)."""

from __future__ import annotations

from collections.abc import Mapping

from dragonfly.storage.ports import Executor

COLUMNS = ("price", "latency", "throughput", "reliability", "quality")


async def stored(db: Executor) -> dict[str, dict[str, float]]:
    """Every stored strategy's weights; a strategy without a row uses the native defaults."""
    rows = await db.fetch_all(f"SELECT strategy, {', '.join(COLUMNS)} FROM strategy_weights")
    return {r["strategy"]: {c: float(r[c]) for c in COLUMNS} for r in rows}


async def put(tx: Executor, strategy: str, weights: Mapping[str, float], *, by: str, now: int) -> None:
    await tx.execute(
        f"INSERT INTO strategy_weights (strategy, {', '.join(COLUMNS)}, updated_by, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (strategy) DO UPDATE SET price = excluded.price, latency = excluded.latency,"
        " throughput = excluded.throughput, reliability = excluded.reliability,"
        " quality = excluded.quality, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        strategy,
        *(float(weights[c]) for c in COLUMNS),
        by,
        now,
    )


async def delete(tx: Executor, strategy: str) -> None:
    await tx.execute("DELETE FROM strategy_weights WHERE strategy = $1", strategy)
