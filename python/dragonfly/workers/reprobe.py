"""The re-probe worker (control plane): brings ejected and degraded listings back when they recover.

Every `period_s` it reads the listings whose re-probe is due (`listing_health.reprobe_at`: set when
health degraded or suspended a contract, services/health.py), claims each one (a conditional UPDATE of its
row with a lease: of several control planes on one PostgreSQL exactly one wins, and a lease left by an
instance that died lapses after `LEASE_MS`), runs the admission probe and applies the outcome
(`services.health.reprobe`, which writes the next schedule and releases the claim). At most
`CONCURRENCY` probes run at once. Probe cost is the platform's, as for any admission probe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from dragonfly.config import Settings
from dragonfly.domain.health import HealthPolicy
from dragonfly.ids import now_ms
from dragonfly.security.secretbox import SecretBox
from dragonfly.services import health
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import health as repo

log = logging.getLogger("dragonfly.workers.reprobe")

PERIOD_S = 1.0
LEASE_MS = 150_000  # longer than a probe can take (each of its requests has a 30 s deadline)
CONCURRENCY = 4
BATCH = 32


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def reprobe_due(
    db: Database, settings: Settings, box: SecretBox, policy: HealthPolicy, *, instance: str
) -> dict[str, str | None]:
    """One pass: claim and re-probe every due listing; returns each claimed listing's status after."""
    now = now_ms()
    claimed = [
        listing_id
        for listing_id in await repo.due(db, now, BATCH)
        if await repo.claim(db, listing_id, now=now, lease_ms=LEASE_MS, by=instance)
    ]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(listing_id: str) -> str | None:
        async with gate:
            try:
                return await health.reprobe(db, settings, box, policy, listing_id, instance=instance)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("re-probe of listing %s failed: %s", listing_id, type(exc).__name__)
                await repo.release(db, listing_id, instance)
                return None

    results = await asyncio.gather(*(one(listing_id) for listing_id in claimed))
    return dict(zip(claimed, results, strict=True))


async def run_forever(
    db: Database, settings: Settings, box: SecretBox, policy: HealthPolicy, *, period_s: float = PERIOD_S
) -> None:
    """The control plane's background task; a failed pass is logged and retried on the next tick."""
    instance = instance_name()
    while True:
        try:
            for listing_id, status in (
                await reprobe_due(db, settings, box, policy, instance=instance)
            ).items():
                log.info("re-probed listing %s: contract %s", listing_id, status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("re-probe pass failed: %s", type(exc).__name__)
        await asyncio.sleep(period_s)
