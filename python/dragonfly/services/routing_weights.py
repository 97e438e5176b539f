"""The operator's routing weights per built-in strategy (`GET/PUT /api/admin/routing/weights`).

The answer always names every operator-tunable strategy (`cost_first`, `balanced`, `reliability_first`,
`quality_first`; `custom` takes its weights from each profile) with all five weights: the stored ones, else
the native core's defaults. A PUT names some or all strategies; each named strategy's weights are
REPLACED whole by the object given — a weight it leaves out is 0, as in a custom profile's `weights` —
and `null` returns the strategy to the defaults. The write bumps the change sequence in its transaction,
so every data-plane instance applies the weights (native `Market.set_strategy_weights`) at its next
snapshot load, before its next ranking.
"""

from __future__ import annotations

from collections.abc import Mapping

from dragonfly.errors import InvalidRequest
from dragonfly.ids import now_ms
from dragonfly.native.market import FEATURES, Market, MarketError, default_strategy_weights
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import strategy_weights as repo

Weights = dict[str, float]


async def current(db: Database) -> dict[str, Weights]:
    stored = await repo.stored(db)
    return {s: stored.get(s, default) for s, default in default_strategy_weights().items()}


def _check(strategy: str, weights: Mapping[str, float]) -> Weights:
    """Every feature named (missing = 0), and accepted by the native core exactly as the data plane will
    apply it (so a stored value can never be refused at snapshot load)."""
    full = {f: float(weights.get(f, 0.0)) for f in FEATURES}
    try:
        Market().set_strategy_weights(strategy, full)
    except MarketError as exc:
        raise InvalidRequest(f"{strategy}: {exc}", param=strategy) from None
    return full


async def update(
    db: Database, wanted: Mapping[str, Mapping[str, float] | None], *, by: str
) -> dict[str, Weights]:
    """Apply `{strategy: weights | None}` (validated names) in one transaction; returns the new state."""
    if not wanted:
        raise InvalidRequest(
            "Name at least one strategy: cost_first, balanced, reliability_first, quality_first."
        )
    checked = {s: None if w is None else _check(s, w) for s, w in wanted.items()}
    now = now_ms()
    async with db.transaction() as tx:
        for strategy, weights in checked.items():
            if weights is None:
                await repo.delete(tx, strategy)
            else:
                await repo.put(tx, strategy, weights, by=by, now=now)
        await changes.bump(tx)
    return await current(db)
