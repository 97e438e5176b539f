"""/v1/market/listings and /v1/market/contracts: listing lifecycle, contracts, checks, admission probes."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.api.http import Reply
from dragonfly.api.schemas.listings import CreateListing, UpdateListing
from dragonfly.services import listings, market_health
from dragonfly.workers import probes


async def create(call: Call) -> Reply:
    body = call.json(CreateListing)
    state = call.state
    out = await listings.create_listing(
        state.db,
        state.settings,
        account_id=call.account_id,
        pool_key_id=str(body.pool_key_id),
        model=body.model,
        upstream_model=body.upstream_model,
        kind=body.kind,
        input_price_per_mtok=body.input_price_per_mtok,
        output_price_per_mtok=body.output_price_per_mtok,
        cached_input_price_per_mtok=body.cached_input_price_per_mtok,
        price_multiplier=body.price_multiplier,
        payout_floor_per_mtok=body.payout_floor_per_mtok,
        rpm_cap=body.rpm_cap,
        concurrency_cap=body.concurrency_cap,
        auto_follow=body.auto_follow.model_dump() if body.auto_follow else None,
        context_length=body.context_length,
        encoding=body.encoding,
        price_unit=body.price_unit,
    )
    _, _, box = state.crypto()
    state.spawn(probes.probe_listing(state.db, state.settings, box, out["id"]), name=f"probe:{out['id']}")
    return Reply(out, 201)


async def list_(call: Call) -> dict[str, Any]:
    db = call.state.db
    data = await listings.list_listings(db, call.account_id, fee_bps=call.state.settings.platform_fee_bps)
    return {"data": await market_health.with_listing_health(db, account_id=call.account_id, listings=data)}


async def get(call: Call) -> dict[str, Any]:
    db = call.state.db
    one = await listings.get_listing(
        db,
        account_id=call.account_id,
        listing_id=call.path("id"),
        fee_bps=call.state.settings.platform_fee_bps,
    )
    (out,) = await market_health.with_listing_health(db, account_id=call.account_id, listings=[one])
    return out


async def update(call: Call) -> dict[str, Any]:
    body = call.json(UpdateListing)
    fields = body.model_dump(include=body.model_fields_set)
    return await listings.update_listing(
        call.state.db,
        account_id=call.account_id,
        listing_id=call.path("id"),
        fields=fields,
        fee_bps=call.state.settings.platform_fee_bps,
    )


async def delete(call: Call) -> Reply:
    await listings.delete_listing(call.state.db, account_id=call.account_id, listing_id=call.path("id"))
    return Reply(None, 204)


async def confirm_price(call: Call) -> dict[str, Any]:
    return await listings.confirm_price(
        call.state.db,
        account_id=call.account_id,
        listing_id=call.path("id"),
        fee_bps=call.state.settings.platform_fee_bps,
    )


async def price_history(call: Call) -> dict[str, Any]:
    data = await listings.list_price_history(
        call.state.db, account_id=call.account_id, listing_id=call.path("id")
    )
    return {"data": data}


async def contracts(call: Call) -> dict[str, Any]:
    data = await listings.list_contracts(
        call.state.db, account_id=call.account_id, listing_id=call.path("id")
    )
    return {"data": data}


async def checks(call: Call) -> dict[str, Any]:
    data = await listings.list_checks(call.state.db, account_id=call.account_id, contract_id=call.path("id"))
    return {"data": data}


async def probe(call: Call) -> dict[str, Any]:
    listing_id = call.path("id")
    await listings.require_owned(call.state.db, account_id=call.account_id, listing_id=listing_id)
    _, _, box = call.state.crypto()
    return await probes.probe_listing(call.state.db, call.state.settings, box, listing_id)


async def probe_runs(call: Call) -> dict[str, Any]:
    data = await listings.list_probe_runs(
        call.state.db, account_id=call.account_id, listing_id=call.path("id")
    )
    return {"data": data}
