"""What the market-health views read (domain/market_health.py): per model, provider or listing, the calls
sellers answered or failed since a time, the one or two middle TTFTs of the completed ones, the routable
listings' prices per model, and the providers with a contract in trouble.

Two sources in the trades table, counted in one statement per view:

* trade rows on a listing (the seller answered 200): `completed` is a success; `failed` (the stream broke
  with no one to continue it) and `continued` (the part of a broken stream another listing went on with)
  are failures. `cancelled` (the buyer left) and `refused` say nothing about the seller.
* failed attempts, from each trade's `attempts` JSON: an attempt that ended in `error`, `timeout` or
  `connect_error` before any byte is a failure of its listing, though the trade itself was settled
  without it (another listing served it, or none did and the trade carries no listing). Errors that are
  the buyer's or back-pressure (HTTP 400, 413, 422, 429) count neither way, as for listing health.

The JSON is read with each dialect's own functions (SQLite `json_each`, PostgreSQL
`jsonb_array_elements`); everything else is the portable subset. The median comes from ROW_NUMBER / COUNT
window functions, so only the middle rows leave the database. Trade rows are reached from their listings,
so each listing's window is a range of the `trades_listing_time` index (the CROSS JOIN keeps SQLite's
planner from putting trades outermost; to PostgreSQL it is an ordinary join). Failed attempts are found
by a primary-key range: trade ids are UUIDv7 made on arrival, so ids from a little before the window's
start bound the scan and `created_at` makes it exact. Trades of deleted listings still count for their
model and provider.
"""

from __future__ import annotations

from dragonfly.storage.ports import Dialect, Executor, Row

# A listing buyers can be routed to (as the data plane's snapshot judges it; its pool key must be alive).
_ROUTABLE = "l.status = 'active' AND l.contract_status IN ('active', 'degraded')"
# Trade ids may be made a little before the trade's `created_at`; the id bound starts this much earlier.
_ID_SLACK_MS = 300_000
_NEUTRAL_ERRORS = "('http_400', 'http_413', 'http_422', 'http_429')"
# Per dialect: the trades joined with their attempts (one row `a.value` per attempt), and a field of it.
_ATTEMPTS: dict[Dialect, tuple[str, str]] = {
    "sqlite": ("trades t, json_each(t.attempts) a", "json_extract(a.value, '$.{}')"),
    "postgres": (
        "trades t CROSS JOIN LATERAL jsonb_array_elements(t.attempts::jsonb) AS a(value)",
        "(a.value ->> '{}')",
    ),
}


def id_floor(ms: int) -> str:
    """The smallest UUIDv7 of millisecond `ms`: every trade id made at or after `ms` sorts at or above it."""
    h = f"{max(ms, 0):012x}"
    return f"{h[:8]}-{h[8:12]}-0000-0000-000000000000"


def _stats_sql(dialect: Dialect, keys: tuple[tuple[str, str], ...], scope: str) -> str:
    """Per group `keys` ((column, name) pairs) over what happened since $1 ($2: the id bound) that
    `scope` (constant SQL on `l`, may use $3) admits: `calls` (successes + failures), `completed`, and
    `mid_sum` / `mid_count`, the sum and number of the middle TTFTs of the completed trades that recorded
    one (NULL when none did)."""
    attempts, field = _ATTEMPTS[dialect]
    select = ", ".join(f"{column} AS {name}" for column, name in keys)
    names = ", ".join(name for _, name in keys)
    on = " AND ".join(f"m.{name} = c.{name}" for _, name in keys)
    out = ", ".join(f"c.{name}" for _, name in keys)
    return (
        f"WITH w AS (SELECT {select}, t.status, t.ttft_ms"
        " FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id CROSS JOIN trades t"
        " WHERE t.listing_id = l.id AND t.created_at >= $1"
        f" AND t.status IN ('completed', 'failed', 'continued'){scope}),"
        f" f AS (SELECT {select} FROM {attempts}"
        f" JOIN listings l ON l.id = {field.format('listing_id')} JOIN pool_keys p ON p.id = l.pool_key_id"
        " WHERE t.id >= $2 AND t.created_at >= $1 AND t.attempts LIKE '%error_type%'"
        f" AND {field.format('status')} IN ('error', 'timeout', 'connect_error')"
        f" AND COALESCE({field.format('error_type')}, '') NOT IN {_NEUTRAL_ERRORS}{scope}),"
        f" u AS (SELECT {names}, COUNT(*) AS calls,"
        f" SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed FROM w GROUP BY {names}"
        f" UNION ALL SELECT {names}, COUNT(*) AS calls, 0 AS completed FROM f GROUP BY {names}),"
        f" counts AS (SELECT {names}, SUM(calls) AS calls, SUM(completed) AS completed"
        f" FROM u GROUP BY {names}),"
        f" ranked AS (SELECT {names}, ttft_ms,"
        f" ROW_NUMBER() OVER (PARTITION BY {names} ORDER BY ttft_ms) AS rn,"
        f" COUNT(*) OVER (PARTITION BY {names}) AS n"
        " FROM w WHERE status = 'completed' AND ttft_ms IS NOT NULL),"
        f" mid AS (SELECT {names}, SUM(ttft_ms) AS mid_sum, COUNT(*) AS mid_count FROM ranked"
        f" WHERE rn = (n + 1) / 2 OR rn = (n + 2) / 2 GROUP BY {names})"
        f" SELECT {out}, c.calls, c.completed, m.mid_sum, m.mid_count"
        f" FROM counts c LEFT JOIN mid m ON {on}"
    )


def _per_dialect(keys: tuple[tuple[str, str], ...], scope: str) -> dict[Dialect, str]:
    return {d: _stats_sql(d, keys, scope) for d in _ATTEMPTS}


_BY_MODEL = _per_dialect((("l.model", "model"), ("l.kind", "kind")), "")
_BY_PROVIDER = _per_dialect((("p.provider", "provider"),), "")
_BY_SELLER_LISTING = _per_dialect((("l.id", "listing_id"),), " AND l.account_id = $3")
_BY_LISTING = _per_dialect((("l.id", "listing_id"),), " AND l.id = $3")


async def by_model(db: Executor, dialect: Dialect, since_ms: int) -> list[Row]:
    """Rows `model, kind, calls, completed, mid_sum, mid_count`, one per model and kind with calls."""
    return await db.fetch_all(_BY_MODEL[dialect], since_ms, id_floor(since_ms - _ID_SLACK_MS))


async def by_provider(db: Executor, dialect: Dialect, since_ms: int) -> list[Row]:
    """Rows `provider, calls, completed, mid_sum, mid_count` over every seller's listings."""
    return await db.fetch_all(_BY_PROVIDER[dialect], since_ms, id_floor(since_ms - _ID_SLACK_MS))


async def by_seller_listing(db: Executor, dialect: Dialect, since_ms: int, account_id: str) -> list[Row]:
    """Rows `listing_id, …` for the listings of one seller that had calls."""
    floor = id_floor(since_ms - _ID_SLACK_MS)
    return await db.fetch_all(_BY_SELLER_LISTING[dialect], since_ms, floor, account_id)


async def by_listing(db: Executor, dialect: Dialect, since_ms: int, listing_id: str) -> Row | None:
    floor = id_floor(since_ms - _ID_SLACK_MS)
    return await db.fetch_one(_BY_LISTING[dialect], since_ms, floor, listing_id)


async def model_listings(db: Executor) -> list[Row]:
    """Per model and kind that has a listing (not deleted, on a live pool key): how many are routable and
    the lowest and highest input and output prices among those (NULL when none is)."""
    return await db.fetch_all(
        "SELECT l.model, l.kind,"
        f" COALESCE(SUM(CASE WHEN {_ROUTABLE} THEN 1 ELSE 0 END), 0) AS active_listings,"
        f" MIN(CASE WHEN {_ROUTABLE} THEN l.input_price END) AS input_min,"
        f" MAX(CASE WHEN {_ROUTABLE} THEN l.input_price END) AS input_max,"
        f" MIN(CASE WHEN {_ROUTABLE} THEN l.output_price END) AS output_min,"
        f" MAX(CASE WHEN {_ROUTABLE} THEN l.output_price END) AS output_max"
        " FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
        " WHERE l.deleted_at IS NULL AND p.deleted_at IS NULL"
        " GROUP BY l.model, l.kind ORDER BY l.model, l.kind"
    )


async def providers_in_trouble(db: Executor) -> set[str]:
    """Providers with a listing in the market (active, not deleted) whose contract health degraded or
    suspended (an operator's suspension suspends the listing itself, so it is not counted)."""
    rows = await db.fetch_all(
        "SELECT DISTINCT p.provider FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
        " WHERE l.deleted_at IS NULL AND p.deleted_at IS NULL AND l.status = 'active'"
        " AND l.contract_status IN ('degraded', 'suspended')"
    )
    return {str(r["provider"]) for r in rows}
