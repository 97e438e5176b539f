"""What the data plane routes, from listings priced through the product's services on both SQL backends:
the snapshot (loaded with the platform fee) holds back a listing whose payout after the fee is below its
floor and a multiplier listing without a reference price, the router never ranks them, and its
explanation — what the operator's routing activity stores — names the pricing reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.market import MODEL, market_settings, seed_listing

from dragonfly.demo.seller import DemoSeller
from dragonfly.errors import ModelNotFound
from dragonfly.gateway.routing import Router
from dragonfly.gateway.snapshot import ProfileInfo, Snapshot, load_snapshot
from dragonfly.ids import now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services import listings, pricing, reference_prices
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes
from dragonfly.workers import pricing as pricing_worker

PROFILE = ProfileInfo("builtin:balanced", "buyer", "balanced", {})


async def _snapshot(db: Database, secret: str, fee_bps: int) -> Snapshot:
    return await load_snapshot(db, SecretBox(secret), await changes.current(db), now_ms(), fee_bps=fee_bps)


def _explained(router: Router, model: str = MODEL) -> dict[str, str | None]:
    return {row["listing_id"]: row["excluded"] for row in router.explain(model, PROFILE.id, now_ms(), 1)}


async def test_a_listing_whose_payout_floor_cannot_be_met_is_never_routed(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    cheap_seller, cheap = await seed_listing(settings, demo_seller, input_price="1", output_price="2")
    _, dear = await seed_listing(
        settings, demo_seller, seller_email="dear@e2e.test", input_price="3", output_price="3"
    )
    db = await open_database(database_url)
    try:
        # 1 USD less the 10 % fee pays 0.9 per 1M input tokens: a floor of 0.95 cannot be met.
        view = await listings.update_listing(
            db, account_id=cheap_seller, listing_id=cheap, fields={"payout_floor_per_mtok": "0.95"}
        )
        assert view["pricing"]["excluded"] == "payout_below_floor"
        snap = await _snapshot(db, settings.secret_key, fee_bps=1_000)
        assert snap.listings_by_id[cheap].pricing_exclusion == "payout_below_floor"
        assert not snap.listings_by_id[cheap].routable and snap.listings_by_id[dear].routable
        router = Router()
        router.load(snap)
        chosen = router.candidates(snap, PROFILE, MODEL, "chat", now_ms(), 1, limit=5)
        assert [x.id for x in chosen] == [dear]  # the cheaper listing would rank first otherwise
        assert _explained(router) == {dear: None, cheap: "payout_below_floor"}

        # Without a fee the same price pays 1.0 per 1M tokens: the floor is met and the listing routed.
        free = await _snapshot(db, settings.secret_key, fee_bps=0)
        router.load(free)
        assert cheap in [x.id for x in router.candidates(free, PROFILE, MODEL, "chat", now_ms(), 1, limit=5)]
        assert _explained(router)[cheap] is None

        # No listing left that meets its floor: the model has nothing to route, and explain says why.
        await listings.update_listing(
            db, account_id=cheap_seller, listing_id=cheap, fields={"input_price_per_mtok": "1.2"}
        )
        dear_seller = snap.listings_by_id[dear].seller_id
        await listings.update_listing(
            db, account_id=dear_seller, listing_id=dear, fields={"payout_floor_per_mtok": "2.8"}
        )
        await listings.update_listing(
            db, account_id=cheap_seller, listing_id=cheap, fields={"payout_floor_per_mtok": "1.9"}
        )
        snap = await _snapshot(db, settings.secret_key, fee_bps=1_000)
        router.load(snap)
        with pytest.raises(ModelNotFound):
            router.candidates(snap, PROFILE, MODEL, "chat", now_ms(), 1, limit=5)
        assert _explained(router) == {dear: "payout_below_floor", cheap: "payout_below_floor"}
        assert router.exclusion_is_static(MODEL, PROFILE.id, now_ms(), 1)
        # A seller's own pause is reported as such, whatever its price.
        await listings.update_listing(
            db, account_id=dear_seller, listing_id=dear, fields={"status": "paused"}
        )
        router.load(snap := await _snapshot(db, settings.secret_key, fee_bps=1_000))
        assert _explained(router)[dear] == "status_paused"
    finally:
        await db.close()


async def test_a_multiplier_listing_without_a_reference_is_held_back_until_it_has_one(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    seller, fixed = await seed_listing(settings, demo_seller, model="acme/other-1")
    db = await open_database(database_url)
    try:
        pool_key = (await listings.get_listing(db, account_id=seller, listing_id=fixed))["pool_key_id"]
        created = await listings.create_listing(
            db,
            settings,
            account_id=seller,
            pool_key_id=pool_key,
            model=MODEL,
            upstream_model="echo-1",
            price_multiplier="1.25",
        )
        lid = created["id"]
        assert created["pricing"]["reference_missing"] is True
        await db.execute(
            "UPDATE listings SET status = 'active', contract_status = 'active' WHERE id = $1", lid
        )
        snap = await _snapshot(db, settings.secret_key, fee_bps=1_000)
        router = Router()
        router.load(snap)
        assert snap.listings_by_id[lid].pricing_exclusion == "reference_price_missing"
        with pytest.raises(ModelNotFound):
            router.candidates(snap, PROFILE, MODEL, "chat", now_ms(), 1, limit=5)
        assert _explained(router) == {lid: "reference_price_missing"}

        await reference_prices.set_reference(db, MODEL, "chat", prices=(800_000, 1_600_000, None), by="ops")
        snap = await _snapshot(db, settings.secret_key, fee_bps=1_000)
        router.load(snap)
        (only,) = router.candidates(snap, PROFILE, MODEL, "chat", now_ms(), 1, limit=5)
        assert (only.id, only.input_price, only.output_price) == (lid, 1_000_000, 2_000_000)
        assert _explained(router) == {lid: None}
        # The worker's pass finds the market as the API writes left it: nothing to move.
        seq = await changes.current(db)
        assert await pricing.reprice_all(db, now=now_ms()) == 0
        assert await changes.current(db) == seq
    finally:
        await db.close()


async def test_one_pricing_pass_per_period_across_control_planes(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        assert await pricing_worker.run_once(db, period_s=60, instance="a") == 0  # claimed; nothing to price
        assert await pricing_worker.run_once(db, period_s=60, instance="b") is None  # not due for a minute
        await db.execute("UPDATE pricing_runs SET next_run_at = $1 WHERE id = 1", now_ms())
        assert await pricing_worker.run_once(db, period_s=60, instance="b") == 0
        row = await db.fetch_one("SELECT run_by, next_run_at, last_run_at FROM pricing_runs WHERE id = 1")
        assert row is not None and row["run_by"] == "b"
        assert row["next_run_at"] - row["last_run_at"] == 60_000
        with pytest.raises(ValueError):
            pricing_worker.check_period(0)
    finally:
        await db.close()
