"""The settlement batch as a fixed list of write-only statements (group commit, ARCHITECTURE.md, Storage).

Each step is one executemany; nothing is read back, so SQLite runs the whole batch inline and
PostgreSQL in one round trip per step. Balance lines are applied in account order, so concurrent
PostgreSQL batches lock rows in the same order and cannot deadlock.

Two shapes of the same batch (`settle_batch` picks):
- fast: journals are inserted strictly (a replayed request id violates UNIQUE (kind, ref) and aborts the
  whole transaction), so nothing after needs a guard, and the balance and key-spend lines are summed per
  account and per (key, month) over the batch — a handful of upserts per batch instead of five per trade.
- guarded, per trade, only after the fast batch hit a unique violation: each journal is inserted with ON
  CONFLICT (kind, ref) DO NOTHING under a freshly made id and every line that depends on it (entries,
  balances, key spend) is inserted only `WHERE EXISTS` that fresh journal id, so a replayed request id
  posts nothing twice and the other trades of the batch still commit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from dragonfly.domain.calendar import month_of
from dragonfly.domain.ledger import Posting, check_balanced
from dragonfly.ids import line_id, new_id
from dragonfly.storage.ports import LOOP_SLICE_S, Database, UniqueViolation
from dragonfly.storage.sql.repos.trades import INSERT_TRADE, TradeRow, as_params

Steps = list[tuple[str, list[tuple[Any, ...]]]]
Batch = list[tuple[TradeRow, list[Posting]]]

_JOURNAL_STRICT = "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, 'trade', $2, NULL, $3)"
# Each journal line carries its own UUID, `public_id` (migration 014): the id the billing API shows.
_ENTRY_PLAIN = (
    "INSERT INTO entries (journal_id, account, amount, created_at, public_id) VALUES ($1, $2, $3, $4, $5)"
)
_BALANCE_SUM = (
    "INSERT INTO balances (account, amount) VALUES ($1, $2)"
    " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount"
)
_KEY_SPEND_SUM = (
    "INSERT INTO key_spend (key_id, month, spent_micros) VALUES ($1, $2, $3)"
    " ON CONFLICT (key_id, month) DO UPDATE SET spent_micros = key_spend.spent_micros + excluded.spent_micros"
)
_JOURNAL = (
    "INSERT INTO journals (id, kind, ref, memo, created_at) VALUES ($1, 'trade', $2, NULL, $3)"
    " ON CONFLICT (kind, ref) DO NOTHING"
)
# CAST keeps the parameter types known to PostgreSQL in a SELECT list; SQLite accepts the same text.
_FRESH = "WHERE EXISTS (SELECT 1 FROM journals WHERE id = CAST($1 AS TEXT))"
_ENTRY = (
    "INSERT INTO entries (journal_id, account, amount, created_at, public_id) SELECT CAST($1 AS TEXT),"
    f" CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS TEXT) {_FRESH}"
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


def _pg_type(annotation: str) -> str:
    return "int8" if annotation.startswith("int") else "text"


# PostgreSQL runs each fast step once per batch on column arrays (`unnest`), instead of once per row:
# the server parses, plans and executes one statement where executemany made it bind and execute one per
# trade (per entry line, for entries). Same rows, same order (balances stay sorted: lock order).
_TRADE_ARRAYS = ", ".join(
    f"${i + 1}::{_pg_type(str(f.type))}[]" for i, f in enumerate(TradeRow.__dataclass_fields__.values())
)
_COLUMNAR = {
    INSERT_TRADE: INSERT_TRADE.split(" VALUES ")[0]
    + f" SELECT * FROM unnest({_TRADE_ARRAYS}) ON CONFLICT (id) DO NOTHING",
    _JOURNAL_STRICT: "INSERT INTO journals (id, kind, ref, memo, created_at)"
    " SELECT j, 'trade', r, NULL, c FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(j, r, c)",
    _ENTRY_PLAIN: "INSERT INTO entries (journal_id, account, amount, created_at, public_id)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[])",
    _BALANCE_SUM: "INSERT INTO balances (account, amount) SELECT * FROM unnest($1::text[], $2::int8[])"
    " ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount",
    _KEY_SPEND_SUM: "INSERT INTO key_spend (key_id, month, spent_micros)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT (key_id, month)"
    " DO UPDATE SET spent_micros = key_spend.spent_micros + excluded.spent_micros",
}


def columnar(steps: Steps) -> Steps:
    """The fast steps as one row of column arrays each, for PostgreSQL."""
    return [
        (_COLUMNAR[sql], [tuple(list(col) for col in zip(*rows, strict=True))]) for sql, rows in steps if rows
    ]


def _pg_trade_values() -> str:
    """The trades columns read from one JSON array per trade (`as_params` order): text as it is, integers
    cast to bigint; the integer flag `streamed` may arrive as a JSON boolean or a number."""
    values = []
    for i, (name, f) in enumerate(TradeRow.__dataclass_fields__.items()):
        if name == "streamed":
            values.append(f"CASE r->>{i} WHEN 'true' THEN 1 WHEN 'false' THEN 0 ELSE (r->>{i})::int END")
        elif _pg_type(str(f.type)) == "int8":
            values.append(f"(r->>{i})::bigint")
        else:
            values.append(f"r->>{i}")
    return ", ".join(values)


_TRADE_COLUMNS = ", ".join(TradeRow.__dataclass_fields__)
# The fast batch as ONE statement with ONE parameter, for PostgreSQL. One statement is a transaction of
# its own: committed whole or not at all, in one round trip, where BEGIN, five statements and COMMIT took
# seven (each ~250 µs at concurrency 1 on the 2-core benchmark VM). The batch travels as one jsonb
# document: asyncpg encodes one text value (orjson builds it) instead of ~40 typed arrays, which took
# ~100 µs of the event loop in one slice per batch (bench_pg_settle.py). The sub-statements (data-modifying
# CTEs) share one snapshot and touch different tables; the entries' foreign key to journals is checked at
# the end of the statement, after the journals' insert; a unique violation anywhere aborts all of it.
# Parts: t = trades, one array per trade in column order (orjson serialises the row's tuple in ~0.4 µs and
# the dataclass in 2.3–4: a full batch of 256 trades ~100 µs of the event loop instead of 600–1,000),
# j = [journal id, request id, at], e = [journal id, account, amount, at, public id], b = [account,
# amount] (summed, in account order: lock order), k = [key id, month, micros] (summed).
ONE_STATEMENT = (
    "WITH d AS (SELECT $1::jsonb AS doc),"
    f" s0 AS (INSERT INTO trades ({_TRADE_COLUMNS}) SELECT {_pg_trade_values()}"
    " FROM d, jsonb_array_elements(d.doc->'t') AS r ON CONFLICT (id) DO NOTHING),"
    " s1 AS (INSERT INTO journals (id, kind, ref, memo, created_at)"
    " SELECT r->>0, 'trade', r->>1, NULL, (r->>2)::bigint FROM d, jsonb_array_elements(d.doc->'j') AS r),"
    " s2 AS (INSERT INTO entries (journal_id, account, amount, created_at, public_id)"
    " SELECT r->>0, r->>1, (r->>2)::bigint, (r->>3)::bigint, r->>4"
    " FROM d, jsonb_array_elements(d.doc->'e') WITH ORDINALITY AS e(r, n) ORDER BY n),"
    " s3 AS (INSERT INTO balances (account, amount)"
    " SELECT r->>0, (r->>1)::bigint FROM d, jsonb_array_elements(d.doc->'b') WITH ORDINALITY AS b(r, n)"
    " ORDER BY n ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount)"
    " INSERT INTO key_spend (key_id, month, spent_micros)"
    " SELECT r->>0, r->>1, (r->>2)::bigint"
    " FROM d, jsonb_array_elements(d.doc->'k') WITH ORDINALITY AS k(r, n)"
    " ORDER BY n ON CONFLICT (key_id, month)"
    " DO UPDATE SET spent_micros = key_spend.spent_micros + excluded.spent_micros"
)


def one_statement(steps: FastSteps, trades_json: bytes) -> Steps:
    """The fast batch as `ONE_STATEMENT`'s single step of one row (`write_batch` runs such a step without
    BEGIN/COMMIT); `trades_json` is `orjson.dumps(steps.trades)`, made in a slice of its own."""
    b = orjson.dumps(sorted(steps.balances.items()))
    k = orjson.dumps(sorted((k, m, v) for (k, m), v in steps.spend.items()))
    j, e = orjson.dumps(steps.journals), orjson.dumps(steps.entries)
    doc = b'{"t":' + trades_json + b',"j":' + j + b',"e":' + e + b',"b":' + b + b',"k":' + k + b"}"
    return [(ONE_STATEMENT, [(doc.decode(),)])]


async def settle_batch(db: Database, batch: Batch) -> list[BaseException | None]:
    """Commit a batch; per trade, None or the error that kept it from committing."""
    try:
        steps = FastSteps()
        started = time.perf_counter()
        for trade, postings in batch:
            if time.perf_counter() - started > LOOP_SLICE_S:  # a full batch is ms of Python: let requests in
                await asyncio.sleep(0)
                started = time.perf_counter()
            steps.add_trade(trade, postings)
        await asyncio.sleep(0)  # the statement (PostgreSQL) or the rows' conversion: a slice of its own
        if db.dialect == "postgres":
            trades_json = orjson.dumps(steps.trades)  # a full batch: ~100 µs, a slice of its own
            await asyncio.sleep(0)
            statement = one_statement(steps, trades_json)
            await asyncio.sleep(0)  # and asyncpg's execute another
            await db.write_batch(statement)
        else:
            await db.write_batch(steps.steps())
        return [None] * len(batch)
    except UniqueViolation:
        pass  # a replayed request id (or one twice in the batch): settle one by one, guarded
    results: list[BaseException | None] = []
    for item in batch:
        try:
            await db.write_batch(settlement_steps([item]))
            results.append(None)
        except Exception as exc:
            results.append(exc)
    return results


class FastSteps:
    """The fast shape's rows, added a slice of the batch at a time."""

    def __init__(self) -> None:
        self.trades: list[tuple[Any, ...]] = []
        self.journals: list[tuple[Any, ...]] = []
        self.entries: list[tuple[Any, ...]] = []
        self.balances: dict[str, int] = {}
        self.spend: dict[tuple[str, str], int] = {}

    def add(self, batch: Batch) -> None:
        for trade, postings in batch:
            self.add_trade(trade, postings)

    def add_trade(self, trade: TradeRow, postings: list[Posting]) -> None:
        self.trades.append(as_params(trade))
        lines = check_balanced(postings)
        if not lines:
            return
        jid = new_id()
        self.journals.append((jid, trade.id, trade.settled_at))
        entries, balances = self.entries, self.balances
        for i, p in enumerate(lines):
            entries.append((jid, p.account, p.amount, trade.settled_at, line_id(jid, i)))
            balances[p.account] = balances.get(p.account, 0) + p.amount
        if trade.cost_micros > 0:
            k = (trade.key_id, month_of(trade.created_at))
            self.spend[k] = self.spend.get(k, 0) + trade.cost_micros

    def steps(self) -> Steps:
        return [
            (INSERT_TRADE, self.trades),
            (_JOURNAL_STRICT, self.journals),
            (_ENTRY_PLAIN, self.entries),
            (_BALANCE_SUM, sorted(self.balances.items())),
            (_KEY_SPEND_SUM, sorted((k, m, v) for (k, m), v in self.spend.items())),
        ]


def fast_settlement_steps(batch: Batch) -> Steps:
    steps = FastSteps()
    steps.add(batch)
    return steps.steps()


def settlement_steps(batch: Batch) -> Steps:
    """The guarded shape: idempotent per request id, whatever was committed before."""
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
        entries.extend(
            (jid, p.account, p.amount, trade.settled_at, line_id(jid, i)) for i, p in enumerate(lines)
        )
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
