"""/api/admin/reference-prices: the operator's reference price per model (and kind), the price a
multiplier listing is a multiple of (services/reference_prices.py).

The model is the rest of the path (`/api/admin/reference-prices/deepseek/deepseek-chat`; a `%2F` for the
slash works too); the kind is `?kind=` (`chat` when absent)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from dragonfly.api.context import Call
from dragonfly.api.schemas.listings import KINDS, MODEL_PATTERN
from dragonfly.api.schemas.reference_prices import ReferencePrice
from dragonfly.errors import InvalidRequest
from dragonfly.services import reference_prices

_MODEL = re.compile(MODEL_PATTERN)


def _model_and_kind(call: Call) -> tuple[str, str]:
    model = unquote(call.path("model"))
    if len(model) > 128 or not _MODEL.fullmatch(model):
        raise InvalidRequest("The model name in the path is not a valid market model name.", param="model")
    kind = call.query("kind") or "chat"
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}.", param="kind")
    return model, kind


async def list_(call: Call) -> dict[str, Any]:
    return await reference_prices.list_references(call.state.db)


async def get(call: Call) -> dict[str, Any]:
    model, kind = _model_and_kind(call)
    return await reference_prices.get_reference(call.state.db, model, kind)


async def put(call: Call) -> dict[str, Any]:
    model, kind = _model_and_kind(call)
    body = call.json(ReferencePrice)
    return await reference_prices.set_reference(
        call.state.db, model, kind, prices=body.prices(), by=call.account_id
    )


async def delete(call: Call) -> dict[str, Any]:
    model, kind = _model_and_kind(call)
    return await reference_prices.clear_reference(call.state.db, model, kind)
