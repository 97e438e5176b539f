"""The market-relative usage audit, live (control plane): every settled per-token trade's reported and
counted tokens feed the detector of domain/usage_audit.py; an alarm flags the block of trades that took
the seller over the threshold, so each is a trade review (`GET /v1/market/trade-reviews`,
`GET /api/admin/flagged-trades`) and its seller's share is held until an operator resolves it.

The detector keeps its state in memory, so one control plane at a time runs it: the one holding the
`usage_audit` lease (`worker_leases`, renewed every pass, lapsing after `LEASE_S` or three periods
without one). On taking the lease a control plane rebuilds the state from the trades of the last
`REPLAY_S` (at most `REPLAY_TRADES`, the newest), without raising alarms, then follows new trades every
period (`DRAGONFLY_USAGE_AUDIT_PERIOD_S`, 15 s by default).

Trades are read in the order they ended (`settled_at`, stamped by the gateway when the trade ended). A
trade reaches the database a moment after that, later when the settlement log had to wait for the
database. Each pass reads again the last `RECENT_S` before the newest end it has fed (where trades still
in a settlement batch when the previous pass read are usual) and skips what it already fed; for the older
rest of the `LOOKBACK_S` it only counts the trades and compares that with how many of them it fed. Equal
(the usual case), that part is not read; otherwise the whole lookback is read again. (Reading the whole
lookback on every pass cost the control plane ~0.4 s of CPU every 15 s at 800 trades/s: each trade was
read eight times.) A trade that reaches the database more than `LOOKBACK_S` after later ones (a
database outage that long) is not fed to the detector; its own bill was still capped and checked against
the review threshold when it settled (domain/billing.py).

An alarm flags only block trades that ended within the earnings lock (`DRAGONFLY_EARNINGS_LOCK_S`): an
older one's seller share may already have been released, and a hold cannot take back money that moved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from dragonfly.domain.usage_audit import Alarm, UsageAudit
from dragonfly.ids import new_id, now_ms
from dragonfly.storage.ports import Database, Row
from dragonfly.storage.sql.repos import usage_audit as repo
from dragonfly.workers.pricing import instance_name

log = logging.getLogger("dragonfly.workers.usage_audit")

LEASE_NAME = "usage_audit"
DEFAULT_PERIOD_S = 15.0
LEASE_S = 60.0
LOOKBACK_S = 120.0
RECENT_S = 5.0
REPLAY_S = 24 * 3600.0
REPLAY_TRADES = 200_000
KINDS = (
    ("prompt", "native_tokens_prompt", "counted_tokens_prompt"),
    ("completion", "native_tokens_completion", "counted_tokens_completion"),
)


def check_period(period_s: float) -> None:
    if not period_s > 0:
        raise ValueError("DRAGONFLY_USAGE_AUDIT_PERIOD_S must be a positive number of seconds")


class AuditFollower:
    """One control plane's side of the audit: the detector and what it has fed it."""

    def __init__(
        self,
        db: Database,
        *,
        lock_s: int,
        period_s: float = DEFAULT_PERIOD_S,
        owner: str | None = None,
        detector: UsageAudit | None = None,
    ) -> None:
        self.db = db
        self.lock_ms = lock_s * 1000
        self.lease_ms = int(max(LEASE_S, 3 * period_s) * 1000)
        self.owner = owner or instance_name()
        self._template = detector or UsageAudit()  # its parameters (tests give small blocks)
        self.audit = dataclasses.replace(self._template, _markets={})
        self.leading = False
        self.newest = 0  # the latest settled_at fed
        self.seen: dict[str, int] = {}  # trade id -> settled_at, for the ids within the lookback
        self.read = 0  # trades the last pass read from the database

    async def step(self, now: int | None = None) -> list[tuple[Alarm, int]]:
        """One pass: hold the lease, then feed the new trades and record the alarms (each with how many
        trades it flagged). Nothing while another control plane holds the lease."""
        now = now_ms() if now is None else now
        if not await repo.claim_lease(
            self.db, name=LEASE_NAME, owner=self.owner, now=now, until=now + self.lease_ms
        ):
            self.leading = False
            return []
        if not self.leading:
            self._rebuild(await repo.latest(self.db, now - int(REPLAY_S * 1000), REPLAY_TRADES))
            self.leading = True
            return []
        since = max(0, self.newest - int(LOOKBACK_S * 1000))
        recent = max(since, self.newest - int(RECENT_S * 1000))
        if self.newest and await repo.count_settled_between(self.db, since, recent) == sum(
            1 for t in self.seen.values() if since <= t < recent
        ):
            since = recent  # every trade of the older lookback was fed: not read again
        rows = await repo.settled_since(self.db, since)
        self.read = len(rows)
        alarms = [a for row in rows for a in self._feed(row)]
        self._forget()
        out = []
        for alarm in alarms:
            async with self.db.transaction() as tx:
                flagged = await repo.record_alarm(
                    tx, self.db.dialect, alarm, alarm_id=new_id(), now=now, not_before=now - self.lock_ms
                )
            log.warning(
                "usage audit alarm: seller %s model %s %s ratio %.4f, the market's %.4f; %d trade(s) flagged",
                alarm.seller,
                alarm.model,
                alarm.kind,
                alarm.ratio,
                alarm.reference,
                flagged,
            )
            out.append((alarm, flagged))
        return out

    async def stop(self) -> None:
        """Give the lease up (another control plane takes over at its next pass)."""
        if self.leading:
            await repo.release_lease(self.db, name=LEASE_NAME, owner=self.owner)
            self.leading = False

    def _rebuild(self, rows: list[Row]) -> None:
        self.audit = dataclasses.replace(self._template, _markets={})
        self.seen.clear()
        self.newest = 0
        for row in rows:
            self._feed(row)  # alarms while rebuilding were raised (or not) by the previous leader
        self._forget()

    def _feed(self, row: Row) -> list[Alarm]:
        trade_id, settled_at = str(row["id"]), int(row["settled_at"])
        if trade_id in self.seen:
            return []
        self.seen[trade_id] = settled_at
        self.newest = max(self.newest, settled_at)
        out = []
        for kind, reported_col, counted_col in KINDS:
            reported, counted = row[reported_col], row[counted_col]
            if reported is None or counted is None:
                continue
            alarm = self.audit.observe(
                str(row["model"]), kind, str(row["seller_account_id"]), int(reported), int(counted), trade_id
            )
            if alarm is not None:
                out.append(alarm)
        return out

    def _forget(self) -> None:
        horizon = self.newest - int(LOOKBACK_S * 1000)
        self.seen = {i: t for i, t in self.seen.items() if t >= horizon}


async def run_forever(db: Database, *, period_s: float = DEFAULT_PERIOD_S, lock_s: int) -> None:
    """The control plane's background task; a failed pass is logged and retried at the next period."""
    check_period(period_s)
    follower = AuditFollower(db, lock_s=lock_s, period_s=period_s)
    try:
        while True:
            try:
                await follower.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                follower.leading = False  # rebuild from the database at the next pass
                log.error("usage audit pass failed: %s", type(exc).__name__)
            await asyncio.sleep(period_s)
    finally:
        try:
            await follower.stop()
        except Exception as exc:  # the lease lapses by itself
            log.info("usage audit lease not given up: %s", type(exc).__name__)
