"""Routing profiles, including each account's lazily created default profile (`balanced`).

Every profile is registered in a throwaway native `Market` (`register_profile`, the data plane's own
call) before it is stored, so what the API accepts the data plane can rank with: anything else is a 400.
`weights` act only with strategy `custom` (which requires them); with another strategy they are refused,
and a PATCH that moves a profile off `custom` drops its stored weights. `hedge.enabled: true` needs
`after_ms` (the schema refuses it without); the data plane hedges with it (gateway/chat.py).

Stored `config` (JSON, read by the data plane's snapshot loader):
    weights: {price, latency, throughput, reliability, quality} | null   (strategy custom only)
    providers_allow: [str] | null, providers_deny: [str], sellers_deny: [str]
    max_input_price, max_output_price: int micro-USD per 1M tokens | null   (exclude listings above)
    max_ttft_ms: int | null, min_throughput_tps: float | null
    fallback: {enabled: bool, max_attempts: 1..5, retry_on: ["429", "5xx", "timeout", "connect_error"]}
    hedge: {enabled: bool, after_ms: int | null}
"""

from __future__ import annotations

from typing import Any

from dragonfly.domain.money import price_str
from dragonfly.errors import InvalidRequest, NotFound
from dragonfly.ids import iso, new_id, now_ms
from dragonfly.native.market import Market, MarketError, register_profile
from dragonfly.storage.ports import Database, Executor, Row, UniqueViolation
from dragonfly.storage.sql.repos import api_keys as keys_repo
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import profiles as repo

DEFAULT_NAME = "balanced"
DEFAULT_FALLBACK: dict[str, Any] = {
    "enabled": True,
    "max_attempts": 3,
    "retry_on": ["429", "5xx", "timeout", "connect_error"],
}
DEFAULT_HEDGE: dict[str, Any] = {"enabled": False, "after_ms": None}
# API field -> stored config key (prices are stored as integers, rendered as decimal strings).
_PRICE_FIELDS = {
    "max_input_price_per_mtok": "max_input_price",
    "max_output_price_per_mtok": "max_output_price",
}
_PLAIN_FIELDS = (
    "weights",
    "providers_allow",
    "providers_deny",
    "sellers_deny",
    "max_ttft_ms",
    "min_throughput_tps",
)


def default_config() -> dict[str, Any]:
    return {
        "weights": None,
        "providers_allow": None,
        "providers_deny": [],
        "sellers_deny": [],
        "max_input_price": None,
        "max_output_price": None,
        "max_ttft_ms": None,
        "min_throughput_tps": None,
        "fallback": dict(DEFAULT_FALLBACK),
        "hedge": dict(DEFAULT_HEDGE),
    }


def render(row: Row) -> dict[str, Any]:
    cfg = {**default_config(), **row["config"]}
    fallback = dict(cfg["fallback"])
    fallback["retry_on"] = [int(r) if r == "429" else r for r in fallback.get("retry_on", [])]
    return {
        "id": row["id"],
        "name": row["name"],
        "strategy": row["strategy"],
        "weights": cfg["weights"] if row["strategy"] == "custom" else None,
        "providers_allow": cfg["providers_allow"],
        "providers_deny": cfg["providers_deny"] or [],
        "sellers_deny": cfg["sellers_deny"] or [],
        "max_input_price_per_mtok": None
        if cfg["max_input_price"] is None
        else price_str(cfg["max_input_price"]),
        "max_output_price_per_mtok": None
        if cfg["max_output_price"] is None
        else price_str(cfg["max_output_price"]),
        "max_ttft_ms": cfg["max_ttft_ms"],
        "min_throughput_tps": cfg["min_throughput_tps"],
        "fallback": fallback,
        "hedge": cfg["hedge"],
        "is_default": row["is_default"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _apply(config: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Merge validated API fields (prices already integers, nested objects as dicts) into a config."""
    out = dict(config)
    for api_name, key in _PRICE_FIELDS.items():
        if api_name in fields:
            out[key] = fields[api_name]
    for name in _PLAIN_FIELDS:
        if name in fields:
            out[name] = fields[name]
    if "fallback" in fields:
        out["fallback"] = fields["fallback"] if fields["fallback"] is not None else dict(DEFAULT_FALLBACK)
    if "hedge" in fields:
        out["hedge"] = fields["hedge"] if fields["hedge"] is not None else dict(DEFAULT_HEDGE)
    if out["providers_deny"] is None:
        out["providers_deny"] = []
    if out["sellers_deny"] is None:
        out["sellers_deny"] = []
    return out


def _check_strategy(strategy: str, config: dict[str, Any], *, hedging_changed: bool = True) -> None:
    """Refuse what the data plane could not rank with, or a hedge that could never start, before it is
    stored (a PATCH checks the hedge only when it changes hedge or fallback)."""
    if strategy == "custom" and not config.get("weights"):
        raise InvalidRequest("strategy custom needs weights.", param="weights")
    if strategy != "custom" and config.get("weights") is not None:
        raise InvalidRequest(
            f"weights apply only to strategy custom; strategy {strategy} uses the operator's weights "
            "for it (send strategy custom with your weights, or leave weights out).",
            param="weights",
        )
    hedge, fallback = config.get("hedge") or {}, config.get("fallback") or {}
    lone = not fallback.get("enabled") or int(fallback.get("max_attempts", 1)) < 2
    if hedging_changed and hedge.get("enabled") and lone:
        raise InvalidRequest(
            "hedging starts a second listing beside the first, so it needs fallback enabled with "
            "max_attempts of 2 or more (or hedge.enabled false).",
            param="hedge",
        )
    try:
        register_profile(Market(), "candidate", strategy, config)
    except MarketError as exc:
        raise InvalidRequest(f"The routing profile cannot be used: {exc}") from None


async def default_profile_id(db: Database, account_id: str) -> str:
    """The account's default profile, created (`balanced`, default settings) on first need."""
    row = await repo.get_default(db, account_id)
    if row is not None:
        return str(row["id"])
    profile_id = new_id()
    try:
        async with db.transaction() as tx:
            await _insert_default(tx, account_id, profile_id)
    except UniqueViolation:  # created concurrently by another request
        row = await repo.get_default(db, account_id)
        if row is None:
            raise
        return str(row["id"])
    return profile_id


async def _insert_default(tx: Executor, account_id: str, profile_id: str) -> None:
    await repo.insert(
        tx,
        profile_id=profile_id,
        account_id=account_id,
        name=DEFAULT_NAME,
        strategy="balanced",
        config=default_config(),
        is_default=True,
        now=now_ms(),
    )
    await changes.bump(tx)


async def list_profiles(db: Database, account_id: str) -> list[dict[str, Any]]:
    await default_profile_id(db, account_id)
    return [render(r) for r in await repo.list_owned(db, account_id)]


async def get_profile(db: Database, *, account_id: str, profile_id: str) -> dict[str, Any]:
    row = await repo.get_owned(db, account_id=account_id, profile_id=profile_id)
    if row is None:
        raise NotFound("Routing profile not found.")
    return render(row)


async def create_profile(
    db: Database, *, account_id: str, name: str, strategy: str, fields: dict[str, Any]
) -> dict[str, Any]:
    await default_profile_id(db, account_id)
    config = _apply(default_config(), fields)
    _check_strategy(strategy, config)
    profile_id = new_id()
    async with db.transaction() as tx:
        await repo.insert(
            tx,
            profile_id=profile_id,
            account_id=account_id,
            name=name,
            strategy=strategy,
            config=config,
            is_default=False,
            now=now_ms(),
        )
        await changes.bump(tx)
        row = await repo.get_owned(tx, account_id=account_id, profile_id=profile_id)
    assert row is not None
    return render(row)


async def update_profile(
    db: Database, *, account_id: str, profile_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    async with db.transaction() as tx:
        row = await repo.get_owned(tx, account_id=account_id, profile_id=profile_id)
        if row is None:
            raise NotFound("Routing profile not found.")
        name = fields.get("name") or row["name"]
        strategy = fields.get("strategy") or row["strategy"]
        config = _apply({**default_config(), **row["config"]}, fields)
        if strategy != "custom" and "weights" not in fields:
            config["weights"] = None  # off custom (or a legacy row): stored weights would not act
        _check_strategy(strategy, config, hedging_changed=bool({"hedge", "fallback"} & set(fields)))
        await repo.update(
            tx, profile_id=profile_id, name=name, strategy=strategy, config=config, now=now_ms()
        )
        await changes.bump(tx)
        updated = await repo.get_owned(tx, account_id=account_id, profile_id=profile_id)
    assert updated is not None
    return render(updated)


async def delete_profile(db: Database, *, account_id: str, profile_id: str) -> None:
    """Soft-delete a profile; keys bound to it are rebound to the account's default profile."""
    default_id = await default_profile_id(db, account_id)
    async with db.transaction() as tx:
        row = await repo.get_owned(tx, account_id=account_id, profile_id=profile_id)
        if row is None:
            raise NotFound("Routing profile not found.")
        if row["is_default"]:
            raise InvalidRequest("The default routing profile cannot be deleted.", param="id")
        await keys_repo.rebind_profile(
            tx, account_id=account_id, old_profile_id=profile_id, new_profile_id=default_id
        )
        await repo.soft_delete(tx, profile_id=profile_id, now=now_ms())
        await changes.bump(tx)


async def resolve_profile_id(db: Database, *, account_id: str, profile_id: str | None) -> str:
    """A caller-supplied profile id that must be the account's own, or the default profile."""
    if profile_id is None:
        return await default_profile_id(db, account_id)
    row = await repo.get_owned(db, account_id=account_id, profile_id=profile_id)
    if row is None:
        raise NotFound("Routing profile not found.", param="routing_profile_id")
    return profile_id
