"""Scenario files: a scripted market in TOML, validated with pydantic (unknown keys and bad values are
errors that name their path, e.g. `listings[2].behaviour.kind: unknown behaviour 'flakey' (known: ...)`).

    name = "seller_outage"
    seed = 7
    duration_s = 7200

    [[models]]
    id = "acme/chat-1"
    tokenizer = "exact"            # Dragonfly counts with the seller's tokenizer: billing caps reports

    [[listings]]
    id = "beta"
    seller = "beta-inc"
    model = "acme/chat-1"
    input_price = "0.40"           # USD per 1M tokens, as the API takes them
    output_price = "1.20"
    behaviour = { kind = "outage", windows = [[1800, 3600]] }

    [[profiles]]
    id = "cheap"
    strategy = "cost_first"        # or custom with `weights`; fallback, hedge as the profile API
    share = 1.0                    # of the traffic

    [traffic]
    rate = [[0, 2.0], [3600, 4.0]] # requests per second over simulated time (linear)

Prices, weights, fallback and hedge take the API's own schemas (api/schemas/profiles.py,
api/schemas/common.py), so a scenario means what the same values mean to the gateway.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dragonfly.api.schemas.common import Price
from dragonfly.api.schemas.profiles import Fallback, Hedge, Strategy, Weights
from dragonfly.native.market import OPERATOR_STRATEGIES
from dragonfly.simulate.behaviours import KINDS, Behaviour, Honest
from dragonfly.simulate.distributions import Curve, Dist, LogNormal, curve

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario"]


class ScenarioError(Exception):
    """A scenario that cannot be read or is not valid; the message names every problem by its path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Ident = Annotated[str, Field(min_length=1, max_length=128)]


class Model(_Strict):
    id: Ident
    tokenizer: Literal["exact", "estimated"] = "exact"
    """`exact`: the listings declare the tokenizer Dragonfly counts with, so billing caps a report at
    the count + 2 % + 4 (domain/billing.py). `estimated`: Dragonfly's count is an estimate, reports
    stand, and only the market-relative audit can tell an inflating seller."""
    tokenizer_ratio: float = Field(default=1.10, gt=0.1, lt=10)
    """`estimated` only: what honest sellers report per token Dragonfly counts (the model's tokenizer
    against o200k_base); per-trade noise as benchmarks/usage_audit_sim.py models it."""
    context_length: int | None = Field(default=None, gt=0)
    reference_input_price: Price | None = None
    """The operator's reference price (`PUT /api/admin/reference-prices`); without one the market's."""
    reference_output_price: Price | None = None

    @model_validator(mode="after")
    def _both_reference_prices(self) -> Model:
        if (self.reference_input_price is None) != (self.reference_output_price is None):
            raise ValueError("reference_input_price and reference_output_price go together")
        return self


class AutoFollow(_Strict):
    mode: Literal["lowest", "median"]
    offset_pct: Decimal = Field(default=Decimal(0), ge=-90, le=100)
    floor: Price | None = None


class Listing(_Strict):
    id: Ident
    seller: Ident
    model: Ident
    provider: Ident = "custom"
    input_price: Price
    output_price: Price
    rpm_cap: int | None = Field(default=None, gt=0)
    concurrency_cap: int | None = Field(default=None, gt=0)
    quality: float | None = Field(default=1.0, ge=0, le=1)
    """The probe score the listing starts with (its admission probe passed: 1.0); None = no run yet."""
    quality_override: float | None = Field(default=None, ge=0, le=1)
    price_multiplier: Decimal | None = Field(default=None, gt=0, le=100)
    auto_follow: AutoFollow | None = None
    payout_floor: Price | None = None
    behaviour: Behaviour = Field(default_factory=lambda: Honest(kind="honest"))

    @model_validator(mode="after")
    def _one_pricing_mode(self) -> Listing:
        if self.price_multiplier is not None and self.auto_follow is not None:
            raise ValueError("price_multiplier and auto_follow exclude each other")
        return self


class Profile(_Strict):
    id: Ident
    strategy: Strategy = "balanced"
    weights: Weights | None = None
    fallback: Fallback | None = None
    hedge: Hedge | None = None
    providers_allow: list[Ident] | None = None
    providers_deny: list[Ident] | None = None
    sellers_deny: list[Ident] | None = None
    max_input_price_per_mtok: Price | None = None
    max_output_price_per_mtok: Price | None = None
    max_ttft_ms: int | None = Field(default=None, ge=1, le=600_000)
    min_throughput_tps: float | None = Field(default=None, gt=0, le=100_000)
    share: float = Field(default=1.0, gt=0)
    """This profile's share of the traffic (relative to the other profiles')."""
    models: dict[Ident, float] | None = None
    """Which models its requests ask for, with relative weights (default: every model alike)."""
    prompt_tokens: Dist = Field(
        default_factory=lambda: LogNormal(dist="lognormal", median=600, sigma=0.9, min=1, max=60_000)
    )
    completion_tokens: Dist = Field(
        default_factory=lambda: LogNormal(dist="lognormal", median=180, sigma=0.8, min=1, max=4_000)
    )
    max_tokens: int | None = Field(default=4096, gt=0)
    """What the requests set as max_tokens (the hold and the continuation's budget; none = unset)."""
    stream_share: float = Field(default=0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _weights_only_custom(self) -> Profile:
        if self.strategy == "custom" and self.weights is None:
            raise ValueError("strategy custom needs weights")
        if self.strategy != "custom" and self.weights is not None:
            raise ValueError(
                f"weights apply only to strategy custom; strategy {self.strategy} uses the operator's "
                "weights ([weights] in the scenario)"
            )
        return self

    @field_validator("models")
    @classmethod
    def _positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and (not value or any(w <= 0 for w in value.values())):
            raise ValueError("model weights must be positive")
        return value

    def config(self) -> dict[str, Any]:
        """The stored profile config (services/profiles.py) the data plane's snapshot reads."""
        return {
            "weights": None if self.weights is None else self.weights.model_dump(),
            "providers_allow": self.providers_allow,
            "providers_deny": self.providers_deny or [],
            "sellers_deny": self.sellers_deny or [],
            "max_input_price": self.max_input_price_per_mtok,
            "max_output_price": self.max_output_price_per_mtok,
            "max_ttft_ms": self.max_ttft_ms,
            "min_throughput_tps": self.min_throughput_tps,
            "fallback": (self.fallback or Fallback()).model_dump(),
            "hedge": (self.hedge or Hedge()).model_dump(),
        }


class Traffic(_Strict):
    rate: Annotated[Curve, curve(linear=True)]
    """Requests per second over simulated time: a number, or `[[time_s, rps], ...]` (linear between)."""


class Health(_Strict):
    """The listing-health settings (docs/operator.md, Listing health); defaults are the gateway's."""

    degrade_after: int = Field(default=5, ge=1)
    suspend_after: int = Field(default=10, ge=2)
    recover_after: int = Field(default=5, ge=1)
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    rate_margin: float = Field(default=0.2, ge=0, le=1)
    base_ejection_s: float = Field(default=30.0, gt=0)
    max_ejection_s: float = Field(default=300.0, gt=0)
    max_ejected_pct: float = Field(default=50.0, ge=0, le=100)


class Gateway(_Strict):
    platform_fee_bps: int = Field(default=1000, ge=0, le=10_000)
    reserve_bps: int = Field(default=500, ge=0, le=10_000)
    upstream_read_timeout_s: float = Field(default=60.0, gt=0)
    pricing_period_s: float = Field(default=60.0, gt=0)


class Expect(_Strict):
    """What a shipped scenario is meant to show, in words (its test checks the numbers)."""

    summary: str = ""


class Scenario(_Strict):
    name: Ident
    description: str = ""
    seed: int = 0
    duration_s: float = Field(gt=0, le=30 * 86_400)
    bucket_s: float | None = Field(default=None, gt=0)
    """The timeline's bucket (traffic share over time); default: the duration / 96."""
    models: list[Model] = Field(min_length=1)
    listings: list[Listing] = Field(min_length=1)
    profiles: list[Profile] = Field(min_length=1)
    traffic: Traffic
    weights: dict[str, Weights] = Field(default_factory=dict)
    """The operator's weights per strategy, as `PUT /api/admin/routing/weights` takes them."""
    health: Health = Field(default_factory=Health)
    gateway: Gateway = Field(default_factory=Gateway)
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        _unique("models", [m.id for m in self.models])
        _unique("listings", [x.id for x in self.listings])
        _unique("profiles", [p.id for p in self.profiles])
        known = {m.id for m in self.models}
        for i, x in enumerate(self.listings):
            if x.model not in known:
                raise ValueError(f"listings[{i}].model: unknown model {x.model!r} (not in [[models]])")
        for i, p in enumerate(self.profiles):
            for m in p.models or {}:
                if m not in known:
                    raise ValueError(f"profiles[{i}].models: unknown model {m!r} (not in [[models]])")
        for strategy in self.weights:
            if strategy not in OPERATOR_STRATEGIES:
                raise ValueError(
                    f"weights: unknown strategy {strategy!r} (known: {', '.join(OPERATOR_STRATEGIES)})"
                )
        if self.health.suspend_after <= self.health.degrade_after:
            raise ValueError("health: suspend_after must be above degrade_after")
        if self.health.max_ejection_s < self.health.base_ejection_s:
            raise ValueError("health: max_ejection_s must be at least base_ejection_s")
        return self

    def scaled(self, factor: float) -> Scenario:
        """The same market over `factor` x the time: the duration, every behaviour's times and the
        traffic curve's times scale; rates (requests per second, failure shares) do not. Tests run the
        shipped scenarios shorter this way."""
        if not factor > 0:
            raise ValueError("the time scale must be positive")
        return self.model_copy(
            update={
                "duration_s": self.duration_s * factor,
                "bucket_s": None if self.bucket_s is None else self.bucket_s * factor,
                "listings": [
                    x.model_copy(update={"behaviour": x.behaviour.scaled_time(factor)}) for x in self.listings
                ],
                "traffic": Traffic(rate=self.traffic.rate.scaled_time(factor)),
            }
        )


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise ValueError(f"{what}[{i}].id: {ident!r} is used twice")
        seen.add(ident)


# -- reading and errors -------------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("constant", "lognormal", "normal", "uniform", *KINDS, "function-after[...]"):
            continue  # the union member pydantic tried: not part of the file's path
        elif str(part).startswith(("function-", "tagged-union[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(err: Any) -> str:
    kind, loc, ctx = err["type"], tuple(err["loc"]), err.get("ctx") or {}
    path = _path(loc)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(ctx.get("discriminator", "")).strip("'")
        known = ", ".join(t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(","))
        what = "behaviour" if tag == "kind" else "distribution" if tag == "dist" else tag
        if kind == "union_tag_not_found":
            return f"{path}.{tag}: missing (known: {known})"
        return f"{path}.{tag}: unknown {what} {ctx.get('tag')!r} (known: {known})"
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if path == "(top level)" and ": " in msg:
        return msg  # a whole-scenario check names its own path
    return f"{path}: {msg}"


def parse_scenario(data: dict[str, Any]) -> Scenario:
    """Validate a decoded scenario; raises ScenarioError naming each problem by its path."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = list(dict.fromkeys(_message(e) for e in exc.errors()))
        raise ScenarioError("\n".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{p}:\n  " + str(exc).replace("\n", "\n  ")) from None
