"""The rows the data plane holds in memory, loaded whole on every change-sequence bump."""

from __future__ import annotations

from dragonfly.domain.ledger import buyer_cash
from dragonfly.storage.ports import Executor, Row

_CHUNK = 500  # bound on bound parameters per query (SQLite's limit is far higher; keeps plans small)


async def live_keys(db: Executor, now_ms: int) -> list[Row]:
    return await db.fetch_all(
        "SELECT id, account_id, kind, key_hash, monthly_budget_cents, routing_profile_id, ip_whitelist,"
        " ip_blacklist, expires_at FROM api_keys"
        " WHERE kind = 'buyer' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        now_ms,
    )


async def live_profiles(db: Executor) -> list[Row]:
    return await db.fetch_all(
        "SELECT id, account_id, name, strategy, config, is_default FROM routing_profiles"
        " WHERE deleted_at IS NULL"
    )


async def routable_listings(db: Executor) -> list[Row]:
    """Every listing that is not deleted, with its pool key (the data plane filters by status itself,
    so a paused or suspended listing still explains why it was skipped)."""
    return await db.fetch_all(
        "SELECT l.id, l.account_id, l.model, l.upstream_model, l.kind, l.input_price, l.output_price,"
        " l.cached_input_price, l.rpm_cap, l.concurrency_cap, l.context_length, l.encoding, l.price_unit,"
        " l.status, l.contract_status, l.payout_floor, l.reference_missing,"
        " p.id AS pool_key_id, p.provider, p.base_url, p.key_ciphertext, p.status AS pool_status,"
        " q.probe_quality, q.quality_override,"
        # The latest passed probe's time to first token: the market's first sample of a listing new to
        # it (gateway/routing.py `Router.load`). Index probe_runs_listing (listing_id, started_at).
        " (SELECT r.ttft_ms FROM probe_runs r WHERE r.listing_id = l.id AND r.passed = 1"
        " AND r.ttft_ms IS NOT NULL ORDER BY r.started_at DESC LIMIT 1) AS probe_ttft_ms"
        " FROM listings l JOIN pool_keys p ON p.id = l.pool_key_id"
        " LEFT JOIN listing_quality q ON q.listing_id = l.id"
        " WHERE l.deleted_at IS NULL AND p.deleted_at IS NULL"
    )


async def account_balances(db: Executor, account_ids: list[str]) -> dict[str, int]:
    """Cash balances of the given buyer accounts (looked up by key, never a scan of every balance)."""
    out: dict[str, int] = {}
    for i in range(0, len(account_ids), _CHUNK):
        chunk = account_ids[i : i + _CHUNK]
        marks = ", ".join(f"${n + 1}" for n in range(len(chunk)))
        rows = await db.fetch_all(
            f"SELECT account, amount FROM balances WHERE account IN ({marks})",
            *[buyer_cash(a) for a in chunk],
        )
        out.update({r["account"].split(":")[1]: int(r["amount"]) for r in rows})
    return out


async def key_month_spend(db: Executor, month: str) -> dict[str, int]:
    """Each key's settled spend in a UTC month (`YYYY-MM`), kept by the settlement batch."""
    rows = await db.fetch_all("SELECT key_id, spent_micros FROM key_spend WHERE month = $1", month)
    return {r["key_id"]: int(r["spent_micros"]) for r in rows}


async def account_key_month_spend(db: Executor, account_id: str, month: str) -> dict[str, int]:
    rows = await db.fetch_all(
        "SELECT s.key_id, s.spent_micros FROM key_spend s JOIN api_keys k ON k.id = s.key_id"
        " WHERE k.account_id = $1 AND s.month = $2",
        account_id,
        month,
    )
    return {r["key_id"]: int(r["spent_micros"]) for r in rows}
