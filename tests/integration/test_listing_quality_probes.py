"""A listing's probe quality (domain/quality.py): kept by the probe worker over the last 10 runs, and
backfilled the same way by migration 006 for listings probed before it — real probes against a demo
seller, on SQLite and PostgreSQL."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from support.market import market_settings, seed_listing

from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.quality import PROBE_WINDOW
from dragonfly.security.secretbox import SecretBox
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.migrate import _statements
from dragonfly.workers.probes import probe_listing


def _backfill(dialect: str) -> str:
    script = (
        resources.files("dragonfly.storage.sql") / "migrations" / dialect / "006_routing.sql"
    ).read_text()
    (statement,) = [s for s in _statements(script) if s.startswith("INSERT INTO listing_quality")]
    return statement


async def test_probe_quality_over_recent_runs_and_its_backfill(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller
) -> None:
    settings = market_settings(database_url, tmp_path / "data")
    _, listing_id = await seed_listing(settings, demo_seller)  # one run, every check passed
    db = await open_database(database_url)
    try:
        read = "SELECT probe_quality, probe_runs FROM listing_quality WHERE listing_id = $1"
        assert await db.fetch_one(read, listing_id) == {"probe_quality": 1.0, "probe_runs": 1}
        # Chat completions now fail: reachability, auth and model_present pass, chat_completion fails (3/4).
        demo_seller.config.fail_status = 500
        box = SecretBox(settings.secret_key)
        run = await probe_listing(db, settings, box, listing_id)
        assert [c["passed"] for c in run["checks"]] == [True, True, True, False]
        assert await db.fetch_one(read, listing_id) == {"probe_quality": 0.875, "probe_runs": 2}
        for _ in range(PROBE_WINDOW - 1):
            await probe_listing(db, settings, box, listing_id)
        # The passing run has left the window of the newest 10.
        kept = await db.fetch_one(read, listing_id)
        assert kept == {"probe_quality": 0.75, "probe_runs": PROBE_WINDOW}

        # As if these runs predated migration 006: its backfill computes the same score.
        await db.execute("DELETE FROM listing_quality")
        await db.execute(_backfill(db.dialect))
        assert await db.fetch_one(read, listing_id) == kept
    finally:
        await db.close()
