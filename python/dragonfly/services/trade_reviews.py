"""Resolving a trade review (`POST /api/admin/flagged-trades/:id/resolve`): uphold refunds the buyer the
excess and releases the rest of the seller's held share; dismiss releases it all (domain/reviews.py).

One transaction under the seller's earnings lock (repos/earnings.py `lock_seller`), so no release, payout
or other resolution of that seller runs between what it reads and what it writes: the review row (its
primary key is the trade: a review resolves once; a second resolution is 409 `conflict`) and, for an
upheld review with an excess, the `review_refund` journal (ref = the trade id). Then the seller's
matured locked earnings are released at once with the release worker's own rule, so what the review held
moves without waiting for the worker's next pass.
"""

from __future__ import annotations

from typing import Any

from dragonfly.config import Settings
from dragonfly.domain.ledger import seller_locked, seller_reserve
from dragonfly.domain.money import TradeCost
from dragonfly.domain.payouts import cutoff_ms
from dragonfly.domain.reviews import REFUND_KIND, RESOLVED, Action, excess, refund_parts, refund_postings
from dragonfly.errors import Conflict, NotFound
from dragonfly.ids import iso, now_ms
from dragonfly.services.flagged_trades import billed, render
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import earnings as earnings_repo
from dragonfly.storage.sql.repos import flagged_trades as repo
from dragonfly.storage.sql.repos import ledger
from dragonfly.workers.settlement import release_seller

_NOT_FOUND = "No flagged trade with this id."


async def resolve(
    db: Database,
    settings: Settings,
    *,
    trade_id: str,
    action: Action,
    note: str | None,
    actor_id: str,
) -> dict[str, Any]:
    """Resolve one open review; the flagged trade as the operator's list shows it, resolved."""
    state = RESOLVED[action]
    now = now_ms()
    async with db.transaction() as tx:
        found = await repo.get(tx, trade_id)
        if found is None or found["seller_account_id"] is None:
            raise NotFound(_NOT_FOUND)
        seller, buyer = str(found["seller_account_id"]), str(found["buyer_account_id"])
        await earnings_repo.lock_seller(tx, db.dialect, seller)
        row = await repo.get(tx, trade_id)  # again, under the lock: another resolution may have won
        assert row is not None
        if row["review_state"] is not None:
            raise Conflict(
                f"This review was already {row['review_state']} at {iso(int(row['review_resolved_at']))}."
            )
        amount = excess(billed(row))
        refund = amount if state == "upheld" else 0
        if refund > 0:
            split = await repo.trade_split(tx, trade_id, buyer, seller)
            parts = refund_parts(TradeCost(**split), min(refund, split["charge"]))
            await _check_covered(tx, seller, parts)
            await ledger.post_journal(
                tx,
                kind=REFUND_KIND,
                ref=trade_id,
                postings=refund_postings(buyer, seller, parts),
                now=now,
                memo=note,
            )
            refund = parts.charge
        await repo.insert_review(
            tx,
            trade_id=trade_id,
            seller_account_id=seller,
            buyer_account_id=buyer,
            state=state,
            excess_micros=amount,
            refund_micros=refund,
            note=note,
            resolved_by=actor_id,
            resolved_at=now,
        )
        resolved = await repo.get(tx, trade_id)
    assert resolved is not None
    await release_seller(db, seller, cutoff=cutoff_ms(now, settings.earnings_lock_s), now=now)
    return render(resolved)


async def _check_covered(tx: Any, seller: str, parts: TradeCost) -> None:
    """The seller's share of a refund comes out of what the review held. A review opened by this version
    always holds it; a trade flagged before reviews held earnings may have been released and paid."""
    locked = await ledger.balance(tx, seller_locked(seller))
    reserve = await ledger.balance(tx, seller_reserve(seller))
    if locked < parts.payout or reserve < parts.reserve:
        raise Conflict(
            "The seller's held earnings no longer cover this refund (the trade's earnings were released "
            "before reviews held them). Dismiss the review and credit the buyer instead."
        )
