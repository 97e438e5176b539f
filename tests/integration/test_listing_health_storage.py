"""Health transitions in the database (services/health.py, workers/reprobe.py) on SQLite and PostgreSQL,
with real probes against a demo seller: a transition is a compare-and-set on the status the instance saw,
an operator suspension is never touched, the ejection share holds a suspension back (and says so in the
check history), and of two instances re-probing at once exactly one probes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from support.market import market_settings, seed_listing

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.health import Evidence, HealthPolicy, Transition
from dragonfly.security.secretbox import SecretBox
from dragonfly.services import admin_listings
from dragonfly.services.health import apply_live
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.workers.reprobe import reprobe_due

POLICY = HealthPolicy(base_ejection_ms=1, max_ejection_ms=1_000)
EVIDENCE = Evidence(10, 0, 30.0, 0, 10, 0, 0, "http_503")


def _to(status: str) -> Transition:
    return Transition(status, "consecutive_failures", EVIDENCE)  # type: ignore[arg-type]


async def _status(db: Database, listing_id: str) -> tuple[str, str]:
    row = await db.fetch_one(
        "SELECT l.contract_status, c.status FROM listings l JOIN contracts c ON c.listing_id = l.id"
        " WHERE l.id = $1",
        listing_id,
    )
    assert row is not None
    return row["contract_status"], row["status"]


async def _kinds(db: Database, listing_id: str) -> list[str]:
    rows = await db.fetch_all(
        "SELECT k.kind FROM contract_checks k JOIN contracts c ON c.id = k.contract_id"
        " WHERE c.listing_id = $1 AND k.kind LIKE 'health:%' ORDER BY k.at, k.id",
        listing_id,
    )
    return [r["kind"] for r in rows]


async def test_transitions_are_compare_and_set_and_respect_the_ejection_share(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    _, only = await seed_listing(settings, demo_seller)
    db = await open_database(database_url)
    try:

        async def live(expected: str, to: str) -> str:
            return await apply_live(
                db, POLICY, listing_id=only, expected=expected, transition=_to(to), instance="test"
            )

        assert await live("degraded", "suspended") == "stale"  # it is active: nothing written
        assert await live("active", "degraded") == "applied"
        assert await _status(db, only) == ("degraded", "degraded")
        assert await live("active", "degraded") == "stale"  # a second instance that saw it active
        # The model's only listing: never ejected at 50 %; the seller sees why.
        assert await live("degraded", "suspended") == "held"
        assert await _status(db, only) == ("degraded", "degraded")
        assert await _kinds(db, only) == ["health:degraded", "health:suspension_held"]

        # A second listing of the model: now one of two may be ejected.
        other_seller = DemoSeller()
        with other_seller.run_in_thread():
            await seed_listing(settings, other_seller, seller_email="other@e2e.test")
        assert await live("degraded", "suspended") == "applied"
        assert await _status(db, only) == ("suspended", "suspended")
        row = await db.fetch_one(
            "SELECT ejections, reprobe_at FROM listing_health WHERE listing_id = $1", only
        )
        assert row is not None and row["ejections"] == 1 and row["reprobe_at"] is not None

        # An operator suspension is the operator's: health writes nothing over it.
        await db.execute("UPDATE contracts SET status = 'degraded' WHERE listing_id = $1", only)
        await db.execute("UPDATE listings SET contract_status = 'degraded' WHERE id = $1", only)
        await admin_listings.suspend(db, listing_id=only, actor_id="ops", reason="abuse")
        assert await live("suspended", "degraded") == "stale"
        assert await _status(db, only) == ("suspended", "suspended")
    finally:
        await db.close()


async def test_two_instances_reprobing_at_once_probe_once(
    database_url: str, tmp_path: Path, demo_seller_factory: Callable[..., DemoSeller]
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    slow = demo_seller_factory(first_token_delay_s=0.3)  # a probe takes a while: both instances overlap
    _, listing = await seed_listing(settings, slow)
    a, b = await open_database(database_url), await open_database(database_url)
    try:
        assert await apply_live(
            a, POLICY, listing_id=listing, expected="active", transition=_to("degraded"), instance="a"
        )
        await asyncio.sleep(0.01)  # the re-probe is due after the base ejection time (1 ms here)
        runs_before = await a.fetch_val("SELECT COUNT(*) FROM probe_runs WHERE listing_id = $1", listing)
        box = SecretBox(settings.secret_key)
        done_a, done_b = await asyncio.gather(
            reprobe_due(a, settings, box, POLICY, instance="a"),
            reprobe_due(b, settings, box, POLICY, instance="b"),
        )
        assert sorted([done_a, done_b], key=len) == [{}, {listing: "active"}]
        runs = await a.fetch_val("SELECT COUNT(*) FROM probe_runs WHERE listing_id = $1", listing)
        assert runs == runs_before + 1
        assert await _status(a, listing) == ("active", "active")
        assert await _kinds(a, listing) == ["health:degraded", "health:reprobe"]
        lease = await a.fetch_one(
            "SELECT reprobe_at, lease_until FROM listing_health WHERE listing_id = $1", listing
        )
        assert lease == {"reprobe_at": None, "lease_until": None}
    finally:
        await a.close()
        await b.close()
