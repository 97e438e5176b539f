"""The pricing worker (control plane): keeps reference prices, multiplier listings and auto-follow
listings in step with the market (services/pricing.py has the pass, domain/pricing.py the rules).

Every `TICK_S` (at most; the period when shorter) it tries to claim the next pass: a conditional UPDATE of
the one `pricing_runs` row that moves `next_run_at` a period on, so of several control planes on one
database exactly one runs each pass, and a control plane that dies mid-pass only delays the market by a
period. A pass re-prices one model (and kind) per transaction; each transaction that moved a listing bumps
the change sequence, so the data plane routes at the new prices within its snapshot poll (PostgreSQL's
change notification: milliseconds). The period is `DRAGONFLY_PRICING_PERIOD_S` (60 s by default); the
first pass runs when the control plane starts. Cancelling the task stops it between statements.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from dragonfly.ids import now_ms
from dragonfly.services.pricing import reprice_all
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import pricing as repo

log = logging.getLogger("dragonfly.workers.pricing")

DEFAULT_PERIOD_S = 60.0
TICK_S = 1.0


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def check_period(period_s: float) -> None:
    """Refuse a period the worker cannot keep (stops the control plane at start)."""
    if not period_s > 0:
        raise ValueError("DRAGONFLY_PRICING_PERIOD_S must be a positive number of seconds")


async def run_once(db: Database, *, period_s: float, instance: str) -> int | None:
    """Claim and run the pass when it is due; the number of listings it moved, None when not claimed."""
    now = now_ms()
    if not await repo.claim_run(db, now=now, period_ms=int(period_s * 1000), by=instance):
        return None
    return await reprice_all(db, now=now)


async def run_forever(db: Database, *, period_s: float = DEFAULT_PERIOD_S) -> None:
    """The control plane's background task; a failed pass is logged and retried at the next period."""
    check_period(period_s)
    instance = instance_name()
    while True:
        try:
            moved = await run_once(db, period_s=period_s, instance=instance)
            if moved:
                log.info("re-priced %d listing(s) from the market", moved)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("pricing pass failed: %s", type(exc).__name__)
        await asyncio.sleep(min(period_s, TICK_S))
