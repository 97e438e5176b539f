"""Database reads that seed the state store (balances and the month's key spend), and the re-seed that
uses them. Always: read the store's marks first, then the database, then SET (see `ports`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from dragonfly.domain.calendar import month_of
from dragonfly.domain.ledger import buyer_cash
from dragonfly.storage.ports import Executor
from dragonfly.storage.sql.repos import snapshot as snapshot_rows
from dragonfly.storage.state.ports import AccountSeed, StateStore

log = logging.getLogger("dragonfly.state.seeding")


async def load_account(db: Executor, account_id: str, key_ids: Sequence[str], now_ms: int) -> AccountSeed:
    """One account (first touch): its cash balance and its keys' spend this month."""
    balance = await db.fetch_val("SELECT amount FROM balances WHERE account = $1", buyer_cash(account_id))
    spent = await snapshot_rows.account_key_month_spend(db, account_id, month_of(now_ms))
    return AccountSeed(account_id, int(balance or 0), month_of(now_ms), {k: spent.get(k, 0) for k in key_ids})


async def load_all(
    db: Executor, keys_by_account: Mapping[str, Sequence[str]], now_ms: int
) -> list[AccountSeed]:
    accounts = sorted(keys_by_account)
    balances = await snapshot_rows.account_balances(db, accounts)
    spend = await snapshot_rows.key_month_spend(db, month_of(now_ms))
    month = month_of(now_ms)
    return [
        AccountSeed(a, balances.get(a, 0), month, {k: spend.get(k, 0) for k in keys_by_account[a]})
        for a in accounts
    ]


async def reseed_all(
    store: StateStore,
    db: Executor,
    keys_by_account: Mapping[str, Sequence[str]],
    now_ms: int,
    before_read: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """The periodic full reconcile: marks, then the database, then SET (raises `StateUnavailable`).

    `before_read` runs between the marks and the database read: with a settlement log it commits what
    the store has already counted; when it answers False (not all committed) this round is skipped."""
    marks = await store.seed_marks(sorted(keys_by_account))
    if before_read is not None and not await before_read():
        log.warning("re-seed skipped: settled trades are not all in the database yet")
        return
    seeds = await load_all(db, keys_by_account, now_ms)
    await store.seed_many([(s, marks[s.account_id]) for s in seeds])
