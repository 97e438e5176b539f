"""Re-pricing a model's listings from the market: reference prices, multiplier listings, auto-follow.

The rules are `domain/pricing.py`'s; this module reads one (model, kind) group of listings, applies them
and writes what moved, in the caller's transaction:

1. the **market reference** — the median of the group's active fixed-price listings (neither multiplier
   nor auto-follow) priced per token — is stored in `reference_prices` (`market_*`); the operator's
   override, when set, is the reference instead;
2. every **multiplier listing** is priced at multiplier × reference (input, output, cached), or marked
   `reference_missing` (unroutable) when there is no reference;
3. every **auto-follow listing** moves to its target from the OTHER active listings of the group with
   the same price unit, never below its floor.

A market-driven move never puts a listing in `price_review`; it confirms the new price (a listing already
awaiting confirmation keeps waiting). A move the seller caused — a PATCH of `price_multiplier` or
`auto_follow` — is held to the 50 % rule like any price the seller sets (`review_listing`). Every move is
a `listing_price_history` row and rewrites the contract's terms; the caller bumps the change sequence
when anything moved, so the data plane routes at the new price from its next snapshot.

Who calls it: the pricing worker for every group once per period (workers/pricing.py), a seller's
create/PATCH/delete and the operator's reference endpoints for the group they touch (so a change made
through the API is in effect on the very next request).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dragonfly.domain import listing_rules
from dragonfly.domain import pricing as rules
from dragonfly.domain.money import price_str
from dragonfly.domain.pricing import Prices
from dragonfly.ids import iso, new_id
from dragonfly.services.listing_terms import terms_of
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import listings as listings_repo
from dragonfly.storage.sql.repos import pricing as repo

_ROUTABLE_CONTRACTS = ("active", "degraded")


@dataclass(frozen=True, slots=True)
class Follow:
    mode: rules.FollowMode
    offset_pct: Decimal
    floor: int | None


@dataclass(frozen=True, slots=True)
class Reference:
    prices: Prices
    source: str  # "operator" | "market"
    listings: int  # how many listings the market median was taken over (0 for the operator's)


def prices_of(row: Row) -> Prices:
    cached = row["cached_input_price"]
    return Prices(int(row["input_price"]), int(row["output_price"]), None if cached is None else int(cached))


def multiplier_of(row: Row) -> Decimal | None:
    raw = row["price_multiplier"]
    return None if raw is None else Decimal(str(raw))


def follow_of(row: Row) -> Follow | None:
    """The listing's auto-follow settings, or None when it does not follow (absent or mode `off`)."""
    raw = row["auto_follow"]
    if not raw or raw.get("mode") not in ("lowest", "median"):
        return None
    floor = raw.get("floor")
    return Follow(
        raw["mode"], Decimal(str(raw.get("offset_pct", "0"))), None if floor is None else int(floor)
    )


def mode_of(row: Row) -> str:
    if row["price_multiplier"] is not None:
        return "multiplier"
    return "auto_follow" if follow_of(row) is not None else "fixed"


def effective_reference(row: Row | None) -> Reference | None:
    """The operator's reference when set, else the market's; None when neither exists."""
    if row is None:
        return None
    if row["override_input_price"] is not None:
        cached = row["override_cached_input_price"]
        prices = Prices(
            int(row["override_input_price"]),
            int(row["override_output_price"]),
            None if cached is None else int(cached),
        )
        return Reference(prices, "operator", 0)
    if row["market_input_price"] is not None:
        cached = row["market_cached_input_price"]
        prices = Prices(
            int(row["market_input_price"]),
            int(row["market_output_price"]),
            None if cached is None else int(cached),
        )
        return Reference(prices, "market", int(row["market_listings"]))
    return None


def pricing_view(row: Row, fee_bps: int) -> dict[str, Any]:
    """The listing view's `pricing`: how it is priced and whether its price keeps it from being routed
    (`excluded`: the routing explanation's reason code, or None)."""
    prices = prices_of(row)
    missing = bool(row["reference_missing"])
    floor = row["payout_floor"]
    return {
        "mode": mode_of(row),
        "reference_missing": missing,
        "lowest_payout_per_mtok": price_str(rules.lowest_payout(row["kind"], prices, fee_bps)),
        "payout_floor_met": rules.meets_payout_floor(row["kind"], prices, floor, fee_bps),
        "excluded": rules.exclusion(
            row["kind"], prices, reference_missing=missing, payout_floor=floor, fee_bps=fee_bps
        ),
    }


def _prices_text(p: Prices) -> str:
    text = f"input {price_str(p.input)}, output {price_str(p.output)}"
    return text if p.cached_input is None else f"{text}, cached input {price_str(p.cached_input)}"


def _market_changed(stored: Row | None, market: Prices | None, listings: int) -> bool:
    if stored is None:
        return market is not None
    before = (
        stored["market_input_price"],
        stored["market_output_price"],
        stored["market_cached_input_price"],
        int(stored["market_listings"]),
    )
    after = (None, None, None, 0) if market is None else (*_triple(market), listings)
    return before != after


def _triple(p: Prices) -> tuple[int, int, int | None]:
    return (p.input, p.output, p.cached_input)


async def _store_market(
    tx: Executor, model: str, kind: str, market: Prices | None, listings: int, now: int
) -> Row | None:
    """Keep the stored market reference equal to `market`; returns the reference row after."""
    stored = await repo.get_reference(tx, model, kind)
    if _market_changed(stored, market, listings):
        await repo.set_market(
            tx, model, kind, prices=None if market is None else _triple(market), listings=listings, now=now
        )
        await repo.delete_empty_reference(tx, model, kind)
        stored = await repo.get_reference(tx, model, kind)
    return stored


class _Group:
    """One (model, kind) group as the pass sees it: each listing's prices and reference flag as they are
    after the moves made so far."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.prices = {r["id"]: prices_of(r) for r in rows}
        self.missing = {r["id"]: bool(r["reference_missing"]) for r in rows}

    def active(self, row: Row) -> bool:
        return (
            row["status"] == "active"
            and row["contract_status"] in _ROUTABLE_CONTRACTS
            and bool(row["pool_usable"])
            and not self.missing[row["id"]]
        )

    def market_listings(self) -> list[Prices]:
        """The listings the market reference is the median of: active, priced per token, at prices their
        sellers fixed — neither multiplier nor auto-follow listings, whose prices derive from the market
        (counting them would feed the reference back into itself)."""
        return [
            self.prices[r["id"]]
            for r in self.rows
            if self.active(r)
            and r["price_multiplier"] is None
            and follow_of(r) is None
            and r["price_unit"] == "token"
        ]

    def others(self, row: Row) -> list[Prices]:
        """What an auto-follow listing follows: the other active listings in its price unit."""
        return [
            self.prices[o["id"]]
            for o in self.rows
            if o["id"] != row["id"] and o["price_unit"] == row["price_unit"] and self.active(o)
        ]


async def reprice_group(
    tx: Executor,
    dialect: str,
    model: str,
    kind: str,
    *,
    now: int,
    review_listing: str | None = None,
) -> list[str]:
    """Re-price one (model, kind) group in the caller's transaction; returns the ids of the listings that
    changed (prices or reference flag), for which the caller bumps the change sequence.
    `review_listing`: a listing whose move its seller just asked for (held to the 50 % rule)."""
    await repo.lock_group(tx, dialect, model, kind)
    group = _Group(await repo.group_listings(tx, model, kind))
    fixed = group.market_listings()
    stored = await _store_market(tx, model, kind, rules.market_reference(fixed), len(fixed), now)
    reference = effective_reference(stored)
    changed: list[str] = []
    for row in group.rows:  # multiplier listings first: auto-follow then sees their new prices
        multiplier = multiplier_of(row)
        if multiplier is not None and await _reprice_multiplier(
            tx, group, row, multiplier, reference, now=now, review=row["id"] == review_listing
        ):
            changed.append(row["id"])
    for row in group.rows:
        follow = follow_of(row)
        if follow is not None and row["price_multiplier"] is None:
            if await _follow(tx, group, row, follow, kind, now=now, review=row["id"] == review_listing):
                changed.append(row["id"])
    return changed


async def _reprice_multiplier(
    tx: Executor,
    group: _Group,
    row: Row,
    multiplier: Decimal,
    reference: Reference | None,
    *,
    now: int,
    review: bool,
) -> bool:
    """multiplier × reference; without a reference the listing keeps its prices, `reference_missing`."""
    if reference is None or row["price_unit"] != "token":
        target, missing, detail = group.prices[row["id"]], True, None
    else:
        target, missing = rules.multiplier_prices(multiplier, reference.prices), False
        detail = f"{multiplier} × the {_describe(reference)}: {_prices_text(reference.prices)}"
    return await _apply(
        tx, group, row, target, missing=missing, source="multiplier", detail=detail, now=now, review=review
    )


async def _follow(
    tx: Executor, group: _Group, row: Row, follow: Follow, kind: str, *, now: int, review: bool
) -> bool:
    """Auto-follow: the target from the other active listings (nothing to follow: the price stays)."""
    others = group.others(row)
    current = group.prices[row["id"]]

    def target(floor: int | None) -> Prices | None:
        return rules.follow_prices(
            current, others, kind=kind, mode=follow.mode, offset_pct=follow.offset_pct, floor=floor
        )

    moved = target(follow.floor)
    if moved is None:
        return False
    detail = f"{follow.mode} of {len(others)} other listing(s) {_offset_text(follow.offset_pct)}"
    if follow.floor is not None and moved != target(None):
        detail += f"; held at the floor {price_str(follow.floor)}"
    return await _apply(
        tx, group, row, moved, missing=False, source="auto_follow", detail=detail, now=now, review=review
    )


def _describe(reference: Reference) -> str:
    if reference.source == "operator":
        return "operator's reference"
    return f"market reference (median of {reference.listings} listing(s))"


def _offset_text(offset: Decimal) -> str:
    if offset == 0:
        return "at par"
    return f"{'+' if offset > 0 else ''}{format(offset.normalize(), 'f')} %"


async def _apply(
    tx: Executor,
    group: _Group,
    row: Row,
    target: Prices,
    *,
    missing: bool,
    source: str,
    detail: str | None,
    now: int,
    review: bool,
) -> bool:
    """Write one listing's new prices and reference flag when they differ from what it has."""
    listing_id = row["id"]
    before = group.prices[listing_id]
    moved = target != before
    # A multiplier listing's first price replaces the zeros it was created with: nothing came before it,
    # so there is nothing to review it against either.
    first = group.missing[listing_id] and before == Prices(0, 0) and row["price_multiplier"] is not None
    updates: dict[str, Any] = {}
    status = row["status"]
    if moved:
        updates.update(
            input_price=target.input, output_price=target.output, cached_input_price=target.cached_input
        )
        if (
            review
            and not first
            and status != "price_review"
            and listing_rules.needs_price_review(
                confirmed_input=int(row["confirmed_input_price"]),
                confirmed_output=int(row["confirmed_output_price"]),
                new_input=target.input,
                new_output=target.output,
            )
        ):
            status = updates["status"] = "price_review"
        elif status != "price_review":
            updates.update(confirmed_input_price=target.input, confirmed_output_price=target.output)
    if missing != group.missing[listing_id]:
        updates["reference_missing"] = int(missing)
    if not updates:
        return False
    await listings_repo.update(tx, listing_id, updates, now=now)
    group.prices[listing_id] = target
    group.missing[listing_id] = missing
    if moved:
        previous = None if first else before
        await record(tx, listing_id, target, previous=previous, source=source, detail=detail, now=now)
        if status != "price_review":
            await refresh_terms(tx, listing_id)
    return True


async def record(
    tx: Executor,
    listing_id: str,
    prices: Prices,
    *,
    previous: Prices | None,
    source: str,
    detail: str | None,
    now: int,
) -> None:
    """One price-history entry."""
    await repo.insert_history(
        tx,
        entry_id=new_id(),
        listing_id=listing_id,
        at=now,
        source=source,
        prices=_triple(prices),
        previous=None if previous is None else (previous.input, previous.output),
        detail=detail,
    )


async def refresh_terms(tx: Executor, listing_id: str) -> None:
    """The current contract's terms follow the listing's prices."""
    updated = await listings_repo.get(tx, listing_id)
    contract = await contracts_repo.current_for_listing(tx, listing_id)
    if updated is not None and contract is not None:
        await contracts_repo.set_terms(tx, contract_id=contract["id"], terms=terms_of(updated))


async def reprice_all(db: Database, *, now: int) -> int:
    """One pass over every group, a transaction each; returns how many listings moved."""
    moved = 0
    for model, kind in await repo.groups(db):
        async with db.transaction() as tx:
            changed = await reprice_group(tx, db.dialect, model, kind, now=now)
            if changed:
                await changes.bump(tx)
        moved += len(changed)
    return moved


def render_history(row: Row) -> dict[str, Any]:
    cached = row["cached_input_price"]
    prev_in, prev_out = row["previous_input_price"], row["previous_output_price"]
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "source": row["source"],
        "input_price_per_mtok": price_str(row["input_price"]),
        "output_price_per_mtok": price_str(row["output_price"]),
        "cached_input_price_per_mtok": None if cached is None else price_str(cached),
        "previous_input_price_per_mtok": None if prev_in is None else price_str(prev_in),
        "previous_output_price_per_mtok": None if prev_out is None else price_str(prev_out),
        "detail": row["detail"],
    }
