"""/v1/market/contracts/:id/reverify and /unsuspend: the seller re-runs the checks of a contract health
degraded or suspended (services/contract_recovery.py)."""

from __future__ import annotations

from typing import Any

from dragonfly.api.context import Call
from dragonfly.services import contract_recovery


async def reverify(call: Call) -> dict[str, Any]:
    _, _, box = call.state.crypto()
    return await contract_recovery.reverify(
        call.state.db, call.state.settings, box, account_id=call.account_id, contract_id=call.path("id")
    )


async def unsuspend(call: Call) -> dict[str, Any]:
    _, _, box = call.state.crypto()
    return await contract_recovery.unsuspend(
        call.state.db, call.state.settings, box, account_id=call.account_id, contract_id=call.path("id")
    )
