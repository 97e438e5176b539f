"""GET /v1/models and GET /v1/generation: read-only views of the snapshot and of trades."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import orjson

from dragonfly.domain.money import price_str, usd
from dragonfly.errors import InvalidRequest, NotFound
from dragonfly.gateway.auth import check_ip, client_ip
from dragonfly.gateway.http import query_param, send_json
from dragonfly.ids import iso
from dragonfly.storage.sql.repos import trades

if TYPE_CHECKING:
    from dragonfly.gateway.runtime import Runtime

# Listings created before this epoch exist only since the process started; `created` is informative.
_CREATED = 1_700_000_000


def _median_price(values: list[int]) -> str:
    return price_str(int(statistics.median(values)))


async def list_models(rt: Runtime, scope: Any, proto: Any, request_id: str) -> None:
    key = await rt.keys.authenticate(scope.headers)
    snap = rt.snapshot
    check_ip(key, client_ip(scope, scope.headers, rt.settings.trusted_proxies))
    data = []
    for model, listings in sorted(snap.listings_by_model.items()):
        active = [x for x in listings if x.routable]
        if not active:
            continue
        ins = [x.input_price for x in active]
        outs = [x.output_price for x in active]
        ctx = [x.context_length for x in active if x.context_length]
        data.append(
            {
                "id": model,
                "object": "model",
                "created": _CREATED,
                "owned_by": model.split("/", 1)[0] if "/" in model else "dragonfly",
                "kind": active[0].kind,
                "listings": len(active),
                "context_length": max(ctx) if ctx else None,
                "pricing": {
                    "input_per_mtok": {"min": price_str(min(ins)), "median": _median_price(ins)},
                    "output_per_mtok": {"min": price_str(min(outs)), "median": _median_price(outs)},
                },
            }
        )
    send_json(proto, 200, {"object": "list", "data": data}, request_id)


def render_trade(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": t["id"],
        "created_at": iso(t["created_at"]),
        "model": t["model"],
        "upstream_model": t["upstream_model"],
        "listing_id": t["listing_id"],
        "seller_id": t["seller_account_id"],
        "provider": t["provider"],
        "streamed": bool(t["streamed"]),
        "finish_reason": t["finish_reason"],
        "status": t["status"],
        "error_code": t["error_code"],
        "latency_ms": t["latency_ms"],
        "ttft_ms": t["ttft_ms"],
        "tokens_prompt": t["tokens_prompt"],
        "tokens_completion": t["tokens_completion"],
        "tokens_cached": t["tokens_cached"],
        "native_tokens_prompt": t["native_tokens_prompt"],
        "native_tokens_completion": t["native_tokens_completion"],
        "counted_tokens_prompt": t["counted_tokens_prompt"],
        "counted_tokens_completion": t["counted_tokens_completion"],
        "characters_prompt": t["characters_prompt"],
        # Trades settled before price units existed were all priced per token.
        "price_unit": t["price_unit"] or ("token" if t["listing_id"] else None),
        "usage_audit": t["usage_audit"],
        "total_cost_usd": usd(int(t["cost_micros"])),
        "seller_payout_usd": usd(int(t["seller_payout_micros"])),
        "platform_fee_usd": usd(int(t["platform_fee_micros"])),
        "key_id": t["key_id"],
        "attempts": orjson.loads(t["attempts"] or "[]"),
    }


async def get_generation(rt: Runtime, scope: Any, proto: Any, request_id: str) -> None:
    key = await rt.keys.authenticate(scope.headers)
    check_ip(key, client_ip(scope, scope.headers, rt.settings.trusted_proxies))
    trade_id = query_param(scope.query_string, "id")
    if not trade_id:
        raise InvalidRequest("query parameter `id` is required", param="id")
    await rt.settler.flush()  # a receipt asked for right after its response is already in the log
    row = await trades.get_for_buyer(rt.db, trade_id, key.account_id)
    if row is None:
        raise NotFound("No generation with that id.")
    send_json(proto, 200, {"data": render_trade(row)}, request_id)
