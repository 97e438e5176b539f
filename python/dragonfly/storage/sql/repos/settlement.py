"""The settlement batch as a fixed list of write-only statements (group commit, DESIGN.md §3).

Each step is one executemany; nothing is read back, so SQLite runs the whole batch in a single hop to
its thread and PostgreSQL in one round trip per step. Idempotency without reads: a trade's journal is
inserted with ON CONFLICT (kind, ref) DO NOTHING under a freshly made id, and every line that depends on
it (entries, balances, key spend) is inserted only `WHERE EXISTS` that fresh journal id — so a replayed
request id posts nothing twice. Balance lines are applied in account order, so concurrent PostgreSQL
batches lock rows in the same order and cannot deadlock.
"""

from __future__ import annotations

from typing import Any

from dragonfly.domain.calendar import month_of
from dragonfly.domain.ledger import Posting, check_balanced
from dragonfly.ids import new_id
from dragonfly.storage.sql.repos.trades import INSERT_TRADE, TradeRow, as_params

_JOURNAL = (
    "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, 'trade', $2, NULL, $3)"
    " ON CONFLICT (kind, ref) DO NOTHING"
)
# CAST keeps the parameter types known to PostgreSQL in a SELECT list; SQLite accepts the same text.
_FRESH = "WHERE EXISTS (SELECT 1 FROM journals WHERE id = CAST($1 AS TEXT))"
_ENTRY = (
    "INSERT INTO entries (journal_id, account, amount, created_at)"
    f" SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS BIGINT) {_FRESH}"
)
_BALANCE = (
    f"INSERT INTO balances (account, amount) SELECT CAST($2 AS TEXT), CAST($3 AS BIGINT) {_FRESH}"
    " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount"
)
_KEY_SPEND = (
    "INSERT INTO key_spend (key_id, month, spent_micros)"
    f" SELECT CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS BIGINT) {_FRESH}"
    " ON CONFLICT (key_id, month) DO UPDATE SET spent_micros = key_spend.spent_micros + excluded.spent_micros"
)


def settlement_steps(batch: list[tuple[TradeRow, list[Posting]]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    trades: list[tuple[Any, ...]] = []
    journals: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []
    balances: list[tuple[Any, ...]] = []
    spend: list[tuple[Any, ...]] = []
    for trade, postings in batch:
        trades.append(as_params(trade))
        lines = check_balanced(postings)
        if not lines:
            continue
        jid = new_id()
        journals.append((jid, trade.id, trade.settled_at))
        entries.extend((jid, p.account, p.amount, trade.settled_at) for p in lines)
        balances.extend((jid, p.account, p.amount) for p in lines)
        if trade.cost_micros > 0:
            spend.append((jid, trade.key_id, month_of(trade.created_at), trade.cost_micros))
    balances.sort(key=lambda row: row[1])
    return [
        (INSERT_TRADE, trades),
        (_JOURNAL, journals),
        (_ENTRY, entries),
        (_BALANCE, balances),
        (_KEY_SPEND, spend),
    ]
