"""A listing's latest passed probe reaches the data plane's snapshot as its time to first token, on both
SQL backends, for the router to give the native market as the listing's first latency sample (what that
does to the ranking: tests/unit/test_routing_policy.py). A later failed probe does not replace the figure."""

from __future__ import annotations

import uuid
from pathlib import Path

from support.market import MODEL, market_settings, seed_listing

from dragonfly.demo.seller import DemoSeller
from dragonfly.gateway.routing import Router
from dragonfly.gateway.snapshot import load_snapshot
from dragonfly.ids import now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes, contracts


async def test_the_latest_passed_probe_ttft_is_the_listings_first_latency_sample(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    _, listing_id = await seed_listing(settings, demo_seller)  # admitted by a real probe of the demo seller
    db = await open_database(database_url)
    try:
        runs = await contracts.list_probe_runs(db, listing_id)
        passed = [r for r in runs if r["passed"] and r["ttft_ms"] is not None]
        assert passed, runs
        latest = passed[0]
        # A failed probe after it, however fast its first byte, is not a latency figure to route by.
        await contracts.insert_probe_run(
            db,
            {
                "id": str(uuid.uuid4()),
                "listing_id": listing_id,
                "contract_id": latest["contract_id"],
                "passed": False,
                "ttft_ms": 1,
                "latency_ms": 2,
                "checks": [],
                "started_at": now_ms() + 1_000,
                "finished_at": now_ms() + 1_001,
            },
        )
        snap = await load_snapshot(db, SecretBox(settings.secret_key), await changes.current(db), now_ms())
        assert snap.listings_by_id[listing_id].probe_ttft_ms == latest["ttft_ms"]
        router = Router()
        router.load(snap)
        # One success with that TTFT: `record_result` answers whether the market knew the listing.
        assert router.market.record_result(listing_id, True, float(latest["ttft_ms"]), None, now_ms())
        assert [r["listing_id"] for r in router.market.explain(MODEL, "builtin:balanced", now_ms(), 1)] == [
            listing_id
        ]
    finally:
        await db.close()
