"""A settlement whose answer never came (PostgreSQL, database mode: the commit is the trade's durable point).

The connection to PostgreSQL is lost while the batch is on its way (a network reset, a proxy restart, a
failover): the server may have committed it or not. The writer must find out — by making the batch again,
which is idempotent by request id — rather than tell the buyer "not charged" about a trade that was
charged, or charge twice. A real PostgreSQL behind a real TCP proxy that cuts the connection
(`support/tcp_cut.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from support.ledger_seed import make_trade
from support.tcp_cut import SETTLEMENT_STATEMENT as SETTLEMENT
from support.tcp_cut import CuttingProxy

from dragonfly.domain.ledger import buyer_cash
from dragonfly.gateway import settlement
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.storage.ports import CommitOutcomeUnknown
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger

pytestmark = pytest.mark.postgres


async def _books(url: str, buyer: str) -> tuple[int, int, int]:
    """(trades, trade journals, the buyer's balance), read around the proxy."""
    db = await open_database(url)
    try:
        n_trades = await db.fetch_val("SELECT COUNT(*) FROM trades")
        n_journals = await db.fetch_val("SELECT COUNT(*) FROM journals WHERE kind = 'trade'")
        return n_trades, n_journals, await ledger.balance(db, buyer_cash(buyer))
    finally:
        await db.close()


@asynccontextmanager
async def _writer(url: str) -> AsyncIterator[SettlementWriter]:
    db = await open_database(url)
    writer = SettlementWriter(db)  # no settlement log: database mode, as on PostgreSQL
    await writer.start()
    try:
        yield writer
    finally:
        await writer.close()
        await db.close()


def _trades(n: int) -> list:
    return [make_trade(buyer="b1", seller="s1", key_id="k1", at_ms=1_000 + i) for i in range(n)]


@pytest.mark.parametrize("delivered", [True, False], ids=["committed-answer-lost", "lost-before-server"])
async def test_a_settlement_whose_answer_was_lost_commits_exactly_once(
    delivered: bool, pg_cutting_proxy: CuttingProxy, pg_database_url: str
) -> None:
    """Cut after the server got the batch (it commits, the answer is lost) or before (it never ran):
    either way `settle` returns normally, the trade is in the books once, and the charge once."""
    first, second = _trades(2)
    async with _writer(pg_cutting_proxy.url_for(pg_database_url)) as writer:
        await writer.settle(first.row, first.postings)  # the writer's connection is open and warm
        pg_cutting_proxy.arm(SETTLEMENT, deliver=delivered)
        await asyncio.wait_for(writer.settle(second.row, second.postings), 10)
        assert pg_cutting_proxy.cuts == 1
    n_trades, n_journals, balance = await _books(pg_database_url, "b1")
    assert (n_trades, n_journals) == (2, 2)
    assert balance == -(first.cost.charge + second.cost.charge)


async def test_a_batch_of_many_trades_lost_mid_commit_commits_each_once(
    pg_cutting_proxy: CuttingProxy, pg_database_url: str
) -> None:
    """Several trades share the lost batch; found committed, none is posted twice."""
    warm, *batch = _trades(6)
    async with _writer(pg_cutting_proxy.url_for(pg_database_url)) as writer:
        await writer.settle(warm.row, warm.postings)
        pg_cutting_proxy.arm(SETTLEMENT, deliver=True)
        await asyncio.wait_for(asyncio.gather(*(writer.settle(t.row, t.postings) for t in batch)), 10)
        assert pg_cutting_proxy.cuts == 1
    n_trades, n_journals, balance = await _books(pg_database_url, "b1")
    assert (n_trades, n_journals) == (6, 6)
    assert balance == -sum(t.cost.charge for t in [warm, *batch])


async def test_a_database_that_stays_unreachable_leaves_the_outcome_unknown(
    pg_cutting_proxy: CuttingProxy, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lost mid-commit and then unreachable for the whole resolve window: `settle` raises
    CommitOutcomeUnknown (never a plain "not recorded"), and here the server had committed it."""
    monkeypatch.setattr(settlement, "RESOLVE_PAUSES_S", (0.05, 0.05, 0.05))
    first, second, third = _trades(3)
    async with _writer(pg_cutting_proxy.url_for(pg_database_url)) as writer:
        await writer.settle(first.row, first.postings)
        pg_cutting_proxy.arm(SETTLEMENT, deliver=True, grace_s=0.3)
        pg_cutting_proxy.refuse = True
        with pytest.raises(CommitOutcomeUnknown):
            await asyncio.wait_for(writer.settle(second.row, second.postings), 10)
        pg_cutting_proxy.refuse = False
        # The writer goes on with the next trade once the database is back.
        await asyncio.wait_for(writer.settle(third.row, third.postings), 10)
    n_trades, n_journals, balance = await _books(pg_database_url, "b1")
    assert (n_trades, n_journals) == (3, 3)  # the second had committed after all
    assert balance == -(first.cost.charge + second.cost.charge + third.cost.charge)
