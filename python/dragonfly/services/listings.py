"""Seller listings and their contracts: create (pending until the admission probe passes), change prices
and caps (with price review), pause/resume, delete, and the contract/check/probe/price history views.

How a listing is priced — fixed prices, a multiple of the model's reference price (`price_multiplier`),
or following the market (`auto_follow`) — is validated here; the re-pricing itself is services/pricing.py,
run for the listing's model in the same transaction as any change that can move a price or the market."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dragonfly.config import Settings
from dragonfly.domain import listing_rules
from dragonfly.domain.money import parse_price, price_str
from dragonfly.domain.pricing import Prices
from dragonfly.errors import Conflict, InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.services import pricing, providers
from dragonfly.services.listing_terms import terms_of
from dragonfly.storage.ports import Database, Executor, Row
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import listings as repo
from dragonfly.storage.sql.repos import pool_keys as pool_repo
from dragonfly.storage.sql.repos import pricing as pricing_repo

# API price field -> column (integers, micro-USD per 1M tokens).
_PRICE_COLUMNS = {
    "input_price_per_mtok": "input_price",
    "output_price_per_mtok": "output_price",
    "cached_input_price_per_mtok": "cached_input_price",
    "payout_floor_per_mtok": "payout_floor",
}
_PLAIN_COLUMNS = ("rpm_cap", "concurrency_cap", "context_length", "encoding")
# The prices a PATCH cannot set on a multiplier listing: they come from the reference.
_SET_PRICES = ("input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok")
# The fee the listing view's payout figures assume when the caller does not name one (the default of
# DRAGONFLY_PLATFORM_FEE_BPS); the API handlers pass the configured fee.
DEFAULT_FEE_BPS = Settings.platform_fee_bps
PRICE_HISTORY_LIMIT = 200


def _p(value: int | None) -> str | None:
    return None if value is None else price_str(value)


def _render_auto_follow(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    floor = value.get("floor")
    return {"mode": value["mode"], "offset_pct": value["offset_pct"], "floor_per_mtok": _p(floor)}


def render(row: Row, fee_bps: int = DEFAULT_FEE_BPS) -> dict[str, Any]:
    return {
        "id": row["id"],
        "pool_key_id": row["pool_key_id"],
        "provider": row["provider"],
        "model": row["model"],
        "upstream_model": row["upstream_model"],
        "kind": row["kind"],
        "input_price_per_mtok": price_str(row["input_price"]),
        "output_price_per_mtok": price_str(row["output_price"]),
        "cached_input_price_per_mtok": _p(row["cached_input_price"]),
        "price_unit": row["price_unit"],
        "price_multiplier": row["price_multiplier"],
        "payout_floor_per_mtok": _p(row["payout_floor"]),
        "confirmed_input_price_per_mtok": price_str(row["confirmed_input_price"]),
        "confirmed_output_price_per_mtok": price_str(row["confirmed_output_price"]),
        "rpm_cap": row["rpm_cap"],
        "concurrency_cap": row["concurrency_cap"],
        "auto_follow": _render_auto_follow(row["auto_follow"]),
        "pricing": pricing.pricing_view(row, fee_bps),
        "context_length": row["context_length"],
        "encoding": row["encoding"],
        "status": row["status"],
        "contract_status": row["contract_status"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def render_contract(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "listing_id": row["listing_id"],
        "status": row["status"],
        "terms": row["terms"],
        "since": iso(row["since"]),
        "reason": row["reason"],
    }


def _auto_follow(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validated API object -> stored JSON (floor as an integer price)."""
    if value is None:
        return None
    floor = value.get("floor_per_mtok")
    return {
        "mode": value.get("mode", "off"),
        "offset_pct": str(value.get("offset_pct", "0")),
        "floor": None if floor is None else int(floor),
    }


def _multiplier(value: Decimal | str | None) -> str | None:
    if value is None:
        return None
    dec = Decimal(str(value))
    if not dec.is_finite() or dec <= 0:
        raise InvalidRequest("price_multiplier must be a positive decimal.", param="price_multiplier")
    return format(dec.normalize(), "f")


def _check_price_unit(kind: str, unit: str | None) -> None:
    try:
        listing_rules.check_price_unit(kind, unit)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="price_unit") from None


def _price_unit_change(row: Row, fields: dict[str, Any]) -> str | None:
    """The unit a PATCH moves the listing to (None: no change); 400 when the listing cannot state it."""
    if "price_unit" not in fields:
        return None
    unit = fields["price_unit"]
    if unit is None:
        raise InvalidRequest("price_unit cannot be null.", param="price_unit")
    _check_price_unit(row["kind"], unit)
    return None if unit == row["price_unit"] else str(unit)


def _as_price(value: int | str, param: str) -> int:
    try:
        return value if isinstance(value, int) else parse_price(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=param) from None


def _follows(value: dict[str, Any] | None) -> bool:
    return bool(value) and (value or {}).get("mode", "off") != "off"


def _check_pricing_mode(
    *, multiplier: str | None, follow: dict[str, Any] | None, unit: str, sent: set[str], param: str
) -> None:
    """A multiplier listing takes every price from the reference: it neither follows the other listings
    nor has prices set on it (`sent`: the price fields of a PATCH), and it is priced per token (as the
    reference is)."""
    if multiplier is None:
        return
    if _follows(follow):
        raise InvalidRequest(
            "price_multiplier and auto_follow exclude each other: a listing is priced from the model's "
            "reference price or follows the other listings, not both.",
            param=param,
        )
    if unit != "token":
        raise InvalidRequest(
            "price_multiplier applies to listings priced per token: the reference price is per token.",
            param="price_multiplier",
        )
    for name in _SET_PRICES:
        if name in sent:
            raise InvalidRequest(
                f"A listing with price_multiplier takes its prices from the model's reference price; leave "
                f"out {name} (or send price_multiplier: null to price the listing yourself).",
                param=name,
            )


async def create_listing(
    db: Database,
    settings: Settings,
    *,
    account_id: str,
    pool_key_id: str,
    model: str,
    input_price_per_mtok: str | int | None = None,
    output_price_per_mtok: str | int | None = None,
    upstream_model: str | None = None,
    kind: str = "chat",
    rpm_cap: int | None = None,
    concurrency_cap: int | None = None,
    context_length: int | None = None,
    encoding: str | None = None,
    cached_input_price_per_mtok: str | int | None = None,
    price_multiplier: Decimal | str | None = None,
    payout_floor_per_mtok: str | int | None = None,
    auto_follow: dict[str, Any] | None = None,
    price_unit: str | None = None,
) -> dict[str, Any]:
    """A new listing starts `pending` with a `pending` contract; the admission probe activates it.
    Prices are decimal strings of USD per 1M tokens (or already-parsed integer micro-USD); a speech
    listing may state `price_unit: character` (its input price is then per 1M input characters).
    A listing with `price_multiplier` is priced at that multiple of the model's reference price, here when
    the model has one; the prices it may also state (API.md lists them as required) are its own until
    then — kept while there is no reference (`reference_missing`, not routable) and the fixed prices it
    keeps if it leaves multiplier pricing."""
    multiplier = _multiplier(price_multiplier)
    follow = _auto_follow(auto_follow)
    sent = {
        name
        for name, value in (
            ("input_price_per_mtok", input_price_per_mtok),
            ("output_price_per_mtok", output_price_per_mtok),
            ("cached_input_price_per_mtok", cached_input_price_per_mtok),
        )
        if value is not None
    }
    if multiplier is None:
        for name in ("input_price_per_mtok", "output_price_per_mtok"):
            if name not in sent:
                raise InvalidRequest(f"{name} is required (or price_multiplier).", param=name)
    pool_key = await pool_repo.get_owned(db, account_id=account_id, pool_key_id=pool_key_id)
    if pool_key is None:
        raise NotFound("Pool key not found.", param="pool_key_id")
    provider = providers.find(pool_key["provider"])
    if provider is not None and kind not in provider.kinds:
        raise InvalidRequest(f"Provider {provider.id} does not serve {kind}.", param="kind")
    _check_price_unit(kind, price_unit)
    _check_pricing_mode(
        multiplier=multiplier, follow=follow, unit=price_unit or "token", sent=set(), param="auto_follow"
    )
    # A multiplier listing is `reference_missing` (at its stated prices, else 0) until the re-price below
    # finds a reference.
    input_price = (
        0 if input_price_per_mtok is None else _as_price(input_price_per_mtok, "input_price_per_mtok")
    )
    output_price = (
        0 if output_price_per_mtok is None else _as_price(output_price_per_mtok, "output_price_per_mtok")
    )
    cached_price = (
        None
        if cached_input_price_per_mtok is None
        else _as_price(cached_input_price_per_mtok, "cached_input_price_per_mtok")
    )
    if cached_price is not None and cached_price > input_price:
        raise InvalidRequest(
            "cached_input_price_per_mtok cannot be above input_price_per_mtok",
            param="cached_input_price_per_mtok",
        )
    now = now_ms()
    row: dict[str, Any] = {
        "id": new_id(),
        "account_id": account_id,
        "pool_key_id": pool_key_id,
        "model": model,
        "upstream_model": upstream_model or (model.split("/", 1)[1] if "/" in model else model),
        "kind": kind,
        "input_price": input_price,
        "output_price": output_price,
        "cached_input_price": cached_price,
        "price_multiplier": multiplier,
        "payout_floor": None
        if payout_floor_per_mtok is None
        else _as_price(payout_floor_per_mtok, "payout_floor_per_mtok"),
        "rpm_cap": rpm_cap,
        "concurrency_cap": concurrency_cap,
        "auto_follow": follow,
        "context_length": context_length,
        "encoding": encoding,
        "price_unit": price_unit or "token",
        "status": "pending",
        "contract_status": "pending",
        "confirmed_input_price": input_price,
        "confirmed_output_price": output_price,
        "reference_missing": 0 if multiplier is None else 1,
        "created_at": now,
        "updated_at": now,
    }
    async with db.transaction() as tx:
        await pricing_repo.lock_group(tx, db.dialect, model, kind)
        await repo.insert(tx, row)
        if "input_price_per_mtok" in sent:
            await pricing.record(
                tx,
                row["id"],
                Prices(input_price, output_price, cached_price),
                previous=None,
                source="seller",
                detail="created",
                now=now,
            )
        created = await repo.get(tx, row["id"])
        assert created is not None
        await contracts_repo.insert(
            tx, contract_id=new_id(), listing_id=row["id"], status="pending", terms=terms_of(created), now=now
        )
        await pricing.reprice_group(tx, db.dialect, model, kind, now=now)
        created = await repo.get(tx, row["id"])
        assert created is not None
        await changes.bump(tx)
    return render(created, settings.platform_fee_bps)


async def _owned(db: Executor, account_id: str, listing_id: str) -> Row:
    row = await repo.get_owned(db, account_id=account_id, listing_id=listing_id)
    if row is None:
        raise NotFound("Listing not found.")
    return row


async def _owned_for_pricing(tx: Executor, dialect: str, account_id: str, listing_id: str) -> Row:
    """The listing, read again once its model's re-pricing lock is held: every write that can move a
    price takes that lock before it touches a listing row (PostgreSQL; no lock-order cycle with the
    pricing worker), and the re-read sees what a re-price committed meanwhile."""
    row = await _owned(tx, account_id, listing_id)
    await pricing_repo.lock_group(tx, dialect, row["model"], row["kind"])
    return await _owned(tx, account_id, listing_id)


async def list_listings(
    db: Database, account_id: str, *, fee_bps: int = DEFAULT_FEE_BPS
) -> list[dict[str, Any]]:
    return [render(r, fee_bps) for r in await repo.list_owned(db, account_id)]


async def get_listing(
    db: Database, *, account_id: str, listing_id: str, fee_bps: int = DEFAULT_FEE_BPS
) -> dict[str, Any]:
    return render(await _owned(db, account_id, listing_id), fee_bps)


def _changes_from(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for api_name, column in _PRICE_COLUMNS.items():
        if api_name in fields:
            value = fields[api_name]
            if value is None and api_name in ("input_price_per_mtok", "output_price_per_mtok"):
                raise InvalidRequest(f"{api_name} cannot be null.", param=api_name)
            out[column] = None if value is None else _as_price(value, api_name)
    for name in _PLAIN_COLUMNS:
        if name in fields:
            out[name] = fields[name]
    if "price_multiplier" in fields:
        out["price_multiplier"] = _multiplier(fields["price_multiplier"])
    if "auto_follow" in fields:
        out["auto_follow"] = _auto_follow(fields["auto_follow"])
    return out


async def update_listing(
    db: Database,
    *,
    account_id: str,
    listing_id: str,
    fields: dict[str, Any],
    fee_bps: int = DEFAULT_FEE_BPS,
) -> dict[str, Any]:
    """Prices, caps, pricing mode, auto-follow and pause/resume. A price move of more than 50 % from the
    confirmed price puts the listing in `price_review` (unroutable until confirmed); smaller moves are
    confirmed at once — also when the move comes from a new `price_multiplier` or `auto_follow`. A speech
    listing's `price_unit` change always needs confirmation: the same number is another price. The model's
    listings are re-priced in the same transaction, so the change is in effect on the next request."""
    now = now_ms()
    async with db.transaction() as tx:
        row = await _owned_for_pricing(tx, db.dialect, account_id, listing_id)
        if row["status"] == "suspended":  # prices and caps too: a price review must not lift it
            raise Conflict("A suspended listing is changed by the platform, not the seller.")
        changes_ = _changes_from(fields)
        new_unit = _price_unit_change(row, fields)
        if new_unit is not None:
            changes_["price_unit"] = new_unit
        _check_mode_change(row, fields, changes_, new_unit)
        status = row["status"]
        if fields.get("status") is not None:
            try:
                status = listing_rules.seller_status_change(status, fields["status"], row["contract_status"])
            except ValueError as exc:
                raise Conflict(str(exc), param="status") from None
        kept_status = status  # what the listing returns to if its price needs no review after all
        new_input: int = changes_["input_price"] if "input_price" in changes_ else row["input_price"]
        new_output: int = changes_["output_price"] if "output_price" in changes_ else row["output_price"]
        new_cached = (
            changes_["cached_input_price"] if "cached_input_price" in changes_ else row["cached_input_price"]
        )
        if new_cached is not None and new_cached > new_input:
            raise InvalidRequest(
                "cached_input_price_per_mtok cannot be above input_price_per_mtok",
                param="cached_input_price_per_mtok",
            )
        if "input_price" in changes_ or "output_price" in changes_ or new_unit is not None:
            if new_unit is not None or listing_rules.needs_price_review(
                confirmed_input=row["confirmed_input_price"],
                confirmed_output=row["confirmed_output_price"],
                new_input=new_input,
                new_output=new_output,
            ):
                status = "price_review"
            elif status != "price_review":
                changes_["confirmed_input_price"] = new_input
                changes_["confirmed_output_price"] = new_output
        changes_["status"] = status
        await repo.update(tx, listing_id, changes_, now=now)
        before = pricing.prices_of(row)
        after = Prices(new_input, new_output, new_cached)
        if after != before:
            detail = "set by the seller" + ("; awaiting confirmation" if status == "price_review" else "")
            await pricing.record(
                tx, listing_id, after, previous=before, source="seller", detail=detail, now=now
            )
        # A new multiplier or auto-follow moves the price on the seller's word: held to the 50 % rule.
        asked = "price_multiplier" in fields or "auto_follow" in fields
        await pricing.reprice_group(
            tx, db.dialect, row["model"], row["kind"], now=now, review_listing=listing_id if asked else None
        )
        updated = await repo.get(tx, listing_id)
        assert updated is not None
        if _review_undone(row, updated, new_unit):
            # An auto-follow listing's stated price went to review, then the market moved it back within
            # the rule: nothing is left to confirm, so it must not sit unroutable in review.
            await repo.update(
                tx,
                listing_id,
                {
                    "status": kept_status,
                    "confirmed_input_price": updated["input_price"],
                    "confirmed_output_price": updated["output_price"],
                },
                now=now,
            )
            updated = await repo.get(tx, listing_id)
            assert updated is not None
        contract = await contracts_repo.current_for_listing(tx, listing_id)
        if contract is not None and updated["status"] != "price_review":
            await contracts_repo.set_terms(tx, contract_id=contract["id"], terms=terms_of(updated))
        await changes.bump(tx)
    return render(updated, fee_bps)


def _review_undone(before: Row, after: Row, new_unit: str | None) -> bool:
    """This PATCH put the listing in price review, and the re-pricing in the same transaction (auto-follow)
    brought its prices back within the 50 % rule of the confirmed ones."""
    return (
        before["status"] != "price_review"
        and after["status"] == "price_review"
        and new_unit is None
        and not listing_rules.needs_price_review(
            confirmed_input=int(after["confirmed_input_price"]),
            confirmed_output=int(after["confirmed_output_price"]),
            new_input=int(after["input_price"]),
            new_output=int(after["output_price"]),
        )
    )


def _check_mode_change(
    row: Row, fields: dict[str, Any], changes_: dict[str, Any], new_unit: str | None
) -> None:
    """The pricing mode the PATCH leaves the listing in must hold together (`_check_pricing_mode`); a
    listing leaving multiplier pricing keeps its current prices as fixed ones, unless it never had any
    (created without prices, and no reference since) — then the PATCH must state them."""
    multiplier = changes_["price_multiplier"] if "price_multiplier" in changes_ else row["price_multiplier"]
    follow = changes_["auto_follow"] if "auto_follow" in changes_ else row["auto_follow"]
    _check_pricing_mode(
        multiplier=multiplier,
        follow=follow,
        unit=new_unit or row["price_unit"],
        sent={name for name in _SET_PRICES if name in fields},
        param="price_multiplier" if "price_multiplier" in fields else "auto_follow",
    )
    if row["price_multiplier"] is not None and multiplier is None:
        changes_["reference_missing"] = 0
        if row["reference_missing"] and row["input_price"] == 0 and row["output_price"] == 0:
            for name in ("input_price_per_mtok", "output_price_per_mtok"):
                if name not in fields:
                    raise InvalidRequest(
                        f"This listing has never had a price to keep: state {name} (and the other "
                        "price) with price_multiplier: null.",
                        param=name,
                    )


async def confirm_price(
    db: Database, *, account_id: str, listing_id: str, fee_bps: int = DEFAULT_FEE_BPS
) -> dict[str, Any]:
    now = now_ms()
    async with db.transaction() as tx:
        row = await _owned_for_pricing(tx, db.dialect, account_id, listing_id)
        if row["status"] != "price_review":
            raise Conflict("The listing has no price awaiting confirmation.")
        await repo.update(
            tx,
            listing_id,
            {
                "confirmed_input_price": row["input_price"],
                "confirmed_output_price": row["output_price"],
                "status": listing_rules.unpaused_status(row["contract_status"]),
            },
            now=now,
        )
        await pricing.reprice_group(tx, db.dialect, row["model"], row["kind"], now=now)
        updated = await repo.get(tx, listing_id)
        assert updated is not None
        contract = await contracts_repo.current_for_listing(tx, listing_id)
        if contract is not None:
            await contracts_repo.set_terms(tx, contract_id=contract["id"], terms=terms_of(updated))
        await changes.bump(tx)
    return render(updated, fee_bps)


async def delete_listing(db: Database, *, account_id: str, listing_id: str) -> None:
    """Soft delete; the model's other listings are re-priced without it (it leaves the market)."""
    now = now_ms()
    async with db.transaction() as tx:
        row = await _owned_for_pricing(tx, db.dialect, account_id, listing_id)
        await repo.soft_delete(tx, listing_id=listing_id, now=now)
        await pricing.reprice_group(tx, db.dialect, row["model"], row["kind"], now=now)
        await changes.bump(tx)


async def list_price_history(db: Database, *, account_id: str, listing_id: str) -> list[dict[str, Any]]:
    """Every price the listing has had, newest first (the newest `PRICE_HISTORY_LIMIT`)."""
    await _owned(db, account_id, listing_id)
    rows = await pricing_repo.list_history(db, listing_id, PRICE_HISTORY_LIMIT)
    return [pricing.render_history(r) for r in rows]


async def list_contracts(db: Database, *, account_id: str, listing_id: str) -> list[dict[str, Any]]:
    await _owned(db, account_id, listing_id)
    return [render_contract(c) for c in await contracts_repo.list_for_listing(db, listing_id)]


async def list_checks(db: Database, *, account_id: str, contract_id: str) -> list[dict[str, Any]]:
    contract = await contracts_repo.get_owned(db, account_id=account_id, contract_id=contract_id)
    if contract is None:
        raise NotFound("Contract not found.")
    return [
        {"id": c["id"], "kind": c["kind"], "passed": c["passed"], "detail": c["detail"], "at": iso(c["at"])}
        for c in await contracts_repo.list_checks(db, contract_id)
    ]


def render_probe_run(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "listing_id": run["listing_id"],
        "contract_id": run["contract_id"],
        "passed": bool(run["passed"]),
        "ttft_ms": run["ttft_ms"],
        "latency_ms": run["latency_ms"],
        "checks": run["checks"],
        "started_at": iso(run["started_at"]),
        "finished_at": iso(run["finished_at"]),
    }


async def list_probe_runs(db: Database, *, account_id: str, listing_id: str) -> list[dict[str, Any]]:
    await _owned(db, account_id, listing_id)
    return [render_probe_run(r) for r in await contracts_repo.list_probe_runs(db, listing_id)]


async def require_owned(db: Database, *, account_id: str, listing_id: str) -> None:
    await _owned(db, account_id, listing_id)
