"""Market health for sellers, from the trades table: per model (`GET /v1/market/health`), per provider
(`health` in `GET /v1/pool/providers`) and per listing of the seller (`health` in their listing views).
The rule and the sample are domain/market_health.py's; the API calls the sample's size `trades`."""

from __future__ import annotations

from typing import Any

from dragonfly.domain import market_health as rules
from dragonfly.domain.market_health import TradeStats
from dragonfly.domain.money import price_str
from dragonfly.errors import InvalidRequest
from dragonfly.ids import now_ms
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import market_health as repo


def parse_window(raw: str | None) -> int:
    try:
        return rules.window_from(raw)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="window_s") from None


def _stats(row: Row | None) -> TradeStats:
    if row is None:
        return rules.NO_TRADES
    return TradeStats(
        calls=int(row["calls"]),
        completed=int(row["completed"] or 0),
        ttft_mid_sum=int(row["mid_sum"] or 0),
        ttft_mid_count=int(row["mid_count"] or 0),
    )


def _since(window_s: int) -> int:
    return now_ms() - window_s * 1000


def _range(low: int | None, high: int | None) -> dict[str, str] | None:
    return None if low is None or high is None else {"min": price_str(int(low)), "max": price_str(int(high))}


async def market(db: Database, *, window_s: int) -> dict[str, Any]:
    """Every model with a listing: routable listings and their price range, and the trade stats of the
    model's listings over the last `window_s` seconds."""
    stats = {
        (r["model"], r["kind"]): _stats(r) for r in await repo.by_model(db, db.dialect, _since(window_s))
    }
    data = []
    for r in await repo.model_listings(db):
        s = stats.get((r["model"], r["kind"]), rules.NO_TRADES)
        inputs, outputs = _range(r["input_min"], r["input_max"]), _range(r["output_min"], r["output_max"])
        data.append(
            {
                "model": r["model"],
                "kind": r["kind"],
                "active_listings": int(r["active_listings"]),
                "price_range": None
                if inputs is None or outputs is None
                else {"input_per_mtok": inputs, "output_per_mtok": outputs},
                "median_ttft_ms": s.median_ttft_ms,
                "success_rate": s.success_rate,
                "trades": s.calls,
                "window_s": window_s,
            }
        )
    return {"window_s": window_s, "data": data}


async def provider_health(db: Database) -> dict[str, str]:
    """Provider id -> `ok`, `degraded` or `unknown`, over the default window; a provider absent from the
    result has no traffic and no contract in trouble (`unknown`)."""
    trouble = await repo.providers_in_trouble(db)
    stats = {
        r["provider"]: _stats(r)
        for r in await repo.by_provider(db, db.dialect, _since(rules.DEFAULT_WINDOW_S))
    }
    return {
        provider: rules.health_status(
            stats.get(provider, rules.NO_TRADES), contract_trouble=provider in trouble
        )
        for provider in trouble | set(stats)
    }


def _listing_health(listing: dict[str, Any], stats: TradeStats, window_s: int) -> dict[str, Any]:
    # A contract that health degraded or suspended; an operator's suspension (listing status `suspended`)
    # is shown by the listing's own status, not judged here.
    trouble = listing["contract_status"] in ("degraded", "suspended") and listing["status"] != "suspended"
    return {
        "status": rules.health_status(stats, contract_trouble=trouble),
        "success_rate": stats.success_rate,
        "trades": stats.calls,
        "median_ttft_ms": stats.median_ttft_ms,
        "window_s": window_s,
    }


async def with_listing_health(
    db: Database, *, account_id: str, listings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The seller's rendered listings, each with `health` over the default window: one query for all of
    them (one for the listing alone when there is just one)."""
    window_s = rules.DEFAULT_WINDOW_S
    since = _since(window_s)
    if len(listings) == 1:
        rows = (
            [r] if (r := await repo.by_listing(db, db.dialect, since, listings[0]["id"])) is not None else []
        )
    elif listings:
        rows = await repo.by_seller_listing(db, db.dialect, since, account_id)
    else:
        rows = []
    stats = {r["listing_id"]: _stats(r) for r in rows}
    return [
        {**x, "health": _listing_health(x, stats.get(x["id"], rules.NO_TRADES), window_s)} for x in listings
    ]
