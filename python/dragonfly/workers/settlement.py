"""Earnings release worker: moves seller earnings out of their lock window (locked -> available) and
reserves out of the reserve period (reserve -> available).

Each run, for every seller with locked earnings, in one transaction per seller: take the seller's
earnings lock (repos/earnings.py `lock_seller`: PostgreSQL `pg_advisory_xact_lock`; SQLite's
`BEGIN IMMEDIATE` already serialises writers), compute what is due (`domain.payouts.release_due`,
cumulative, less what open trade reviews hold, so a second run or a second control plane finds nothing
left to move), post one balanced `earnings_release` journal with the idempotent ref `<seller>:<cutoff>`,
and record a `seller_settlements` row (same ref) in the same transaction.

Then, for every seller with a reserve, the same for the reserve (`reserve_release`, ref
`<seller>:<cutoff>`, no settlement row): credits older than the reserve period, less what open reviews
hold, unless a review of the seller's was upheld within the period (`domain.payouts.reserve_paused`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from dragonfly.domain.payouts import (
    RELEASE_KIND,
    RESERVE_RELEASE_KIND,
    cutoff_ms,
    release_due,
    release_postings,
    release_ref,
    reserve_cutoff_ms,
    reserve_paused,
    reserve_release_postings,
)
from dragonfly.ids import new_id, now_ms
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import earnings as repo
from dragonfly.storage.sql.repos import ledger

log = logging.getLogger("dragonfly.workers.settlement")

DEFAULT_PERIOD_S = 60.0
DEFAULT_RESERVE_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class Release:
    seller_account_id: str
    amount_micros: int
    trades_count: int
    period_start: int
    period_end: int


async def release_seller(db: Database, seller_id: str, *, cutoff: int, now: int) -> Release | None:
    """Release what is due for one seller at `cutoff`; None when nothing is due."""
    async with db.transaction() as tx:
        await repo.lock_seller(tx, db.dialect, seller_id)
        last_end, counted = await repo.settled_so_far(tx, seller_id)
        if last_end is not None and cutoff <= last_end:
            return None  # another run (or instance, with a later clock) already settled past this cutoff
        acct, matured_count = await repo.locked_account(tx, seller_id, cutoff)
        amount = release_due(acct)
        if amount <= 0:
            return None
        start = last_end if last_end is not None else (await repo.first_credit_at(tx, seller_id) or cutoff)
        ref = release_ref(seller_id, cutoff)
        posted = await ledger.post_journal(
            tx, kind=RELEASE_KIND, ref=ref, postings=release_postings(seller_id, amount), now=now
        )
        if not posted:
            return None
        out = Release(seller_id, amount, max(0, matured_count - counted), start, cutoff)
        await repo.insert_settlement(
            tx,
            repo.SettlementRow(
                id=new_id(),
                seller_account_id=seller_id,
                amount_micros=amount,
                trades_count=out.trades_count,
                period_start=out.period_start,
                period_end=cutoff,
                created_at=now,
                ref=ref,
            ),
        )
    return out


async def release_reserve(db: Database, seller_id: str, *, days: float, now: int) -> int:
    """Release what is due from one seller's reserve at `now`; the amount moved (0 when nothing)."""
    cutoff = reserve_cutoff_ms(now, days)
    async with db.transaction() as tx:
        await repo.lock_seller(tx, db.dialect, seller_id)
        if reserve_paused(await repo.last_upheld_at(tx, seller_id), now, days):
            return 0
        amount = release_due(await repo.reserve_account(tx, seller_id, cutoff))
        if amount <= 0:
            return 0
        posted = await ledger.post_journal(
            tx,
            kind=RESERVE_RELEASE_KIND,
            ref=release_ref(seller_id, cutoff),
            postings=reserve_release_postings(seller_id, amount),
            now=now,
        )
    return amount if posted else 0


async def release_due_earnings(db: Database, *, lock_s: int, now: int | None = None) -> list[Release]:
    """One pass over every seller with locked earnings. Returns what was released."""
    at = now_ms() if now is None else now
    cutoff = cutoff_ms(at, lock_s)
    done = []
    for seller_id in await repo.sellers_with_locked(db):
        released = await release_seller(db, seller_id, cutoff=cutoff, now=at)
        if released is not None:
            done.append(released)
    return done


async def release_due_reserves(db: Database, *, days: float, now: int | None = None) -> dict[str, int]:
    """One pass over every seller with a reserve: seller id -> micro-USD released (only those moved)."""
    at = now_ms() if now is None else now
    out: dict[str, int] = {}
    for seller_id in await repo.sellers_with_reserve(db):
        amount = await release_reserve(db, seller_id, days=days, now=at)
        if amount > 0:
            out[seller_id] = amount
    return out


def check_reserve_days(days: float) -> None:
    """Refuse a reserve period that cannot be one (DRAGONFLY_RESERVE_RELEASE_DAYS)."""
    if not 0 <= days <= 3650:
        raise ValueError(f"DRAGONFLY_RESERVE_RELEASE_DAYS must be from 0 to 3650 days, not {days!r}")


async def run_forever(
    db: Database,
    *,
    lock_s: int,
    period_s: float = DEFAULT_PERIOD_S,
    reserve_days: float = DEFAULT_RESERVE_DAYS,
) -> None:
    """The control plane's background task: a release pass every `period_s` seconds, first one at once.
    A failed pass is logged and retried on the next tick; cancellation stops the loop."""
    while True:
        try:
            released = await release_due_earnings(db, lock_s=lock_s)
            if released:
                total = sum(r.amount_micros for r in released)
                log.info("released %d micro-USD of earnings for %d seller(s)", total, len(released))
            reserves = await release_due_reserves(db, days=reserve_days)
            if reserves:
                total = sum(reserves.values())
                log.info("released %d micro-USD of reserves for %d seller(s)", total, len(reserves))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("earnings release pass failed: %s", type(exc).__name__)
        await asyncio.sleep(period_s)
