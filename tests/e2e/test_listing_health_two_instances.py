"""Listing health with two `dragonfly serve` instances on one PostgreSQL and one Redis: a transition one
instance's traffic decides holds on the other at once (the state is the database's), and of the two
control planes exactly one re-probes an ejected listing at a time (a claimed row), until it recovers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
from support.health_market import open_market, seed_two_sellers
from support.market import market_settings, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

EJECTION_ENV = {"DRAGONFLY_HEALTH_BASE_EJECTION_S": "1", "DRAGONFLY_HEALTH_MAX_EJECTION_S": "2"}


def _at(check: dict[str, str]) -> float:
    return datetime.fromisoformat(check["at"].replace("Z", "+00:00")).timestamp()


def test_health_moves_on_every_instance_and_one_control_plane_reprobes(
    pg_database_url: str,
    fresh_redis_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> None:
    settings = market_settings(pg_database_url, tmp_path / "data")
    cheap = demo_seller_factory()
    ids = seed_two_sellers(settings, cheap, demo_seller_factory())
    env = {**EJECTION_ENV, "DRAGONFLY_REDIS_URL": fresh_redis_url}
    a, b = (start_serve(processes, settings, extra_env=env) for _ in range(2))
    m = open_market(a, settings, fresh_redis_url, cheap, ids)
    assert m.chat(b).first == m.cheap

    # A's traffic degrades CHEAP; B ranks it second from then on without a failure of its own.
    cheap.config.fail_status = 503
    m.wait_for("degraded", 5.0, between=lambda: m.chat(a))
    assert all(m.chat(b).first == m.pricey for _ in range(5))

    # The re-probes that follow (one control plane at a time) fail and eject it, again and again.
    m.wait_for("suspended", 10.0)
    deadline = time.monotonic() + 20.0
    while len(reprobes := [c for c in m.checks() if c["kind"] == "health:reprobe"]) < 4:
        assert time.monotonic() < deadline, reprobes
        time.sleep(0.2)
    assert all(not c["passed"] for c in reprobes)
    times = sorted(_at(c) for c in reprobes)
    gaps = [later - earlier for earlier, later in pairwise(times)]
    # Each due re-probe ran once: the next one only after the ejection time (>= 1 s), never twice at once.
    # (Both control planes poll every second; tests/integration/test_listing_health_storage.py races two
    # re-probers on one due listing deterministically.)
    assert min(gaps) >= 0.9, gaps

    cheap.config.fail_status = None
    m.wait_for("active", 20.0)
    for origin in (a, b):
        for _ in range(50):
            if m.chat(origin).first == m.cheap:
                break
        else:
            raise AssertionError(f"{origin} never sent a first attempt to the recovered listing")
    m.assert_books_clean()
