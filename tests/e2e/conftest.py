"""End-to-end fixtures: a market seeded through the product's own services, and `dragonfly serve`
running as a real subprocess in front of it (both storage backends). Helpers live in support.market."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.market import Market, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller


@pytest.fixture
def market(
    database_url: str, tmp_path: Path, demo_seller: DemoSeller, processes: ProcessGroup
) -> Iterator[Market]:
    settings = market_settings(database_url, tmp_path / "data")
    seller_id, listing_id = asyncio.run(seed_listing(settings, demo_seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=500))
    origin = start_serve(processes, settings)
    yield Market(f"{origin}/v1", origin, key, buyer_id, seller_id, listing_id, settings)
