"""The seller behaviour library: how a listing's upstream answers, as a function of simulated time.

Every behaviour has the latency of an honest seller (`ttft_ms`, time to the first token, and `tps`,
completion tokens per second); each kind adds one way of going wrong, from `from_s` (simulated seconds;
0 = from the start) to `until_s` (none = to the end), its **bad period**:

| kind              | while bad                                                                        |
|-------------------|----------------------------------------------------------------------------------|
| `honest`          | never bad                                                                        |
| `slow`            | TTFT x `ttft_factor`, throughput x `tps_factor`                                  |
| `flaky`           | fails a `failure_rate` share of calls (a curve: `[[time_s, rate], ...]`, steps)  |
| `outage`          | fails every call within `windows` (`[[start_s, end_s], ...]`)                   |
| `dies_mid_stream` | a `rate` share of answers break after `after` (a share) of their tokens         |
| `inflates`        | reports `percent` % more tokens than it served (`tokens`: completion/prompt/both)|
| `substitutes`     | serves `cheaper_model` instead: faster, and not what the buyer paid for         |

A failing call fails as `fails_as`: `connect_error` (refused at once), `timeout` (no answer: the gateway's
read timeout ends it), or an HTTP status (`http_500`, `http_502`, `http_503`, `http_429`).

The engine asks `respond` for one call's answer when the gateway sends it, and `probe` for a re-probe's
outcome (workers/probes.py: four checks, the run stops at the first that fails).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, field_validator, model_validator

from dragonfly.simulate.distributions import Curve, Dist, LogNormal, Uniform, curve

__all__ = ["KINDS", "Answer", "Behaviour", "FailureKind"]

FailureKind = Literal["connect_error", "timeout", "http_500", "http_502", "http_503", "http_429"]
KINDS = ("honest", "slow", "flaky", "outage", "dies_mid_stream", "inflates", "substitutes")
CONNECT_ERROR_MS = 20  # a refused connection answers at once
HTTP_ERROR_MS = 150  # an error status comes back quickly
PROBE_CHECKS = 4  # models, completion, usage honesty, stream (workers/probes.py)


@dataclass(slots=True)
class Answer:
    """One call's answer, decided when the gateway sends it. Times are milliseconds after the send."""

    failure: str | None  # None (a 200), "connect_error", "timeout" or "http"
    status: int  # the HTTP status (200 for an answer; 0 without one)
    ttft_ms: int  # to the first token (a failure: to the failure)
    gen_ms: int  # from the first token to the last served one
    served: int  # completion tokens the seller serves (all of them, or up to the break)
    broken: bool  # the answer breaks off after `served` tokens
    inflation: float  # reported = served x inflation, for the kinds in `inflates`
    inflates: str  # "completion", "prompt", "both" or ""
    bad: bool  # the seller misbehaved on this call (its bad period)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: Dist = Field(default_factory=lambda: LogNormal(dist="lognormal", median=400, sigma=0.35))
    tps: Dist = Field(default_factory=lambda: LogNormal(dist="lognormal", median=70, sigma=0.25, min=1))
    from_s: float = Field(default=0.0, ge=0)
    until_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered_period(self) -> _Base:
        if self.until_s is not None and self.until_s <= self.from_s:
            raise ValueError(f"until_s {self.until_s} must be after from_s {self.from_s}")
        return self

    # -- what the engine asks ------------------------------------------------------------------------

    def bad_at(self, t_s: float) -> bool:
        return self.from_s <= t_s and (self.until_s is None or t_s < self.until_s)

    def bad_windows(self, duration_s: float) -> list[tuple[float, float]]:
        """The spans of simulated time in which the seller misbehaves (the report's bad periods)."""
        end = duration_s if self.until_s is None else min(self.until_s, duration_s)
        return [(self.from_s, end)] if self.from_s < end else []

    def respond(self, t_s: float, rng: random.Random, completion_tokens: int, read_timeout_ms: int) -> Answer:
        bad = self.bad_at(t_s)
        ttft = self._ttft(rng, bad)
        if ttft >= read_timeout_ms:
            return Answer("timeout", 0, read_timeout_ms, 0, 0, False, 1.0, "", bad)
        tps = self._tps(rng, bad)
        return self._answer(
            t_s, rng, bad, ttft, max(1, int(completion_tokens * 1000 / tps)), completion_tokens
        )

    def probe(self, t_s: float, rng: random.Random) -> int:
        """How many of a re-probe's checks pass (all: `PROBE_CHECKS`); the run stops at the first failure."""
        return PROBE_CHECKS

    def scaled_time(self, factor: float) -> _Base:
        return self.model_copy(update=self._time_fields(factor))

    # -- for the kinds -------------------------------------------------------------------------------

    def _time_fields(self, factor: float) -> dict[str, object]:
        return {
            "from_s": self.from_s * factor,
            "until_s": None if self.until_s is None else self.until_s * factor,
        }

    def _ttft(self, rng: random.Random, bad: bool) -> int:
        return max(1, int(self.ttft_ms.sample(rng)))

    def _tps(self, rng: random.Random, bad: bool) -> float:
        return max(0.1, self.tps.sample(rng))

    def _answer(self, t_s: float, rng: random.Random, bad: bool, ttft: int, gen: int, tokens: int) -> Answer:
        return Answer(None, 200, ttft, gen, tokens, False, 1.0, "", False)


def _failure(fails_as: str, read_timeout_ms: int) -> Answer:
    if fails_as == "connect_error":
        return Answer("connect_error", 0, CONNECT_ERROR_MS, 0, 0, False, 1.0, "", True)
    if fails_as == "timeout":
        return Answer("timeout", 0, read_timeout_ms, 0, 0, False, 1.0, "", True)
    return Answer("http", int(fails_as[5:]), HTTP_ERROR_MS, 0, 0, False, 1.0, "", True)


def _probe_fails(rng: random.Random, rate: float) -> int:
    """Checks passed when each fails with probability `rate`."""
    for passed in range(PROBE_CHECKS):
        if rng.random() < rate:
            return passed
    return PROBE_CHECKS


class Honest(_Base):
    kind: Literal["honest"]

    def bad_at(self, t_s: float) -> bool:
        return False

    def bad_windows(self, duration_s: float) -> list[tuple[float, float]]:
        return []


class Slow(_Base):
    kind: Literal["slow"]
    ttft_factor: float = Field(default=5.0, gt=0)
    tps_factor: float = Field(default=0.3, gt=0)

    def _ttft(self, rng: random.Random, bad: bool) -> int:
        return max(1, int(self.ttft_ms.sample(rng) * (self.ttft_factor if bad else 1.0)))

    def _tps(self, rng: random.Random, bad: bool) -> float:
        return max(0.1, self.tps.sample(rng) * (self.tps_factor if bad else 1.0))

    def _answer(self, t_s: float, rng: random.Random, bad: bool, ttft: int, gen: int, tokens: int) -> Answer:
        return Answer(None, 200, ttft, gen, tokens, False, 1.0, "", bad)


class Flaky(_Base):
    kind: Literal["flaky"]
    failure_rate: Annotated[Curve, curve(linear=False)]
    fails_as: FailureKind = "http_503"

    @field_validator("failure_rate")
    @classmethod
    def _rates(cls, value: Curve) -> Curve:
        if value.peak() > 1:
            raise ValueError("values are shares of calls, at most 1")
        return value

    def bad_at(self, t_s: float) -> bool:
        return super().bad_at(t_s) and self.failure_rate.at(t_s) > 0

    def bad_windows(self, duration_s: float) -> list[tuple[float, float]]:
        out = []
        for start, end in self.failure_rate.above(0.0, duration_s):
            lo, hi = max(start, self.from_s), min(end, self.until_s or duration_s)
            if lo < hi:
                out.append((lo, hi))
        return out

    def respond(self, t_s: float, rng: random.Random, completion_tokens: int, read_timeout_ms: int) -> Answer:
        if self.bad_at(t_s) and rng.random() < self.failure_rate.at(t_s):
            return _failure(self.fails_as, read_timeout_ms)
        answer = super().respond(t_s, rng, completion_tokens, read_timeout_ms)
        answer.bad = answer.bad or self.bad_at(t_s)
        return answer

    def probe(self, t_s: float, rng: random.Random) -> int:
        return _probe_fails(rng, self.failure_rate.at(t_s)) if self.bad_at(t_s) else PROBE_CHECKS

    def _time_fields(self, factor: float) -> dict[str, object]:
        return {**super()._time_fields(factor), "failure_rate": self.failure_rate.scaled_time(factor)}


class Outage(_Base):
    kind: Literal["outage"]
    windows: tuple[tuple[float, float], ...] = Field(min_length=1)
    fails_as: FailureKind = "connect_error"

    @model_validator(mode="after")
    def _windows_ordered(self) -> Outage:
        last = -1.0
        for start, end in self.windows:
            if start < 0 or end <= start or start < last:
                raise ValueError("windows must be [start_s, end_s] spans, in order, not overlapping")
            last = end
        return self

    def bad_at(self, t_s: float) -> bool:
        return any(start <= t_s < end for start, end in self.windows)

    def bad_windows(self, duration_s: float) -> list[tuple[float, float]]:
        return [(s, min(e, duration_s)) for s, e in self.windows if s < duration_s]

    def respond(self, t_s: float, rng: random.Random, completion_tokens: int, read_timeout_ms: int) -> Answer:
        if self.bad_at(t_s):
            return _failure(self.fails_as, read_timeout_ms)
        return super().respond(t_s, rng, completion_tokens, read_timeout_ms)

    def probe(self, t_s: float, rng: random.Random) -> int:
        return 0 if self.bad_at(t_s) else PROBE_CHECKS

    def _time_fields(self, factor: float) -> dict[str, object]:
        return {"windows": tuple((s * factor, e * factor) for s, e in self.windows)}


class DiesMidStream(_Base):
    kind: Literal["dies_mid_stream"]
    rate: float = Field(default=0.5, gt=0, le=1)
    after: Dist = Field(default_factory=lambda: Uniform(dist="uniform", low=0.1, high=0.9, max=1))

    def _answer(self, t_s: float, rng: random.Random, bad: bool, ttft: int, gen: int, tokens: int) -> Answer:
        if bad and tokens > 1 and rng.random() < self.rate:
            served = min(tokens - 1, max(1, int(tokens * self.after.sample(rng))))
            return Answer(None, 200, ttft, max(1, gen * served // tokens), served, True, 1.0, "", True)
        return Answer(None, 200, ttft, gen, tokens, False, 1.0, "", bad)

    def probe(self, t_s: float, rng: random.Random) -> int:
        # The stream check is the last: a broken stream fails it.
        if self.bad_at(t_s) and rng.random() < self.rate:
            return PROBE_CHECKS - 1
        return PROBE_CHECKS


class Inflates(_Base):
    kind: Literal["inflates"]
    percent: float = Field(gt=0, le=1000)
    tokens: Literal["completion", "prompt", "both"] = "completion"

    def _answer(self, t_s: float, rng: random.Random, bad: bool, ttft: int, gen: int, tokens: int) -> Answer:
        if bad:
            return Answer(None, 200, ttft, gen, tokens, False, 1 + self.percent / 100, self.tokens, True)
        return Answer(None, 200, ttft, gen, tokens, False, 1.0, "", False)


class Substitutes(_Base):
    kind: Literal["substitutes"]
    cheaper_model: str = Field(min_length=1)
    ttft_factor: float = Field(default=0.6, gt=0)
    tps_factor: float = Field(default=1.5, gt=0)

    def _ttft(self, rng: random.Random, bad: bool) -> int:
        return max(1, int(self.ttft_ms.sample(rng) * (self.ttft_factor if bad else 1.0)))

    def _tps(self, rng: random.Random, bad: bool) -> float:
        return max(0.1, self.tps.sample(rng) * (self.tps_factor if bad else 1.0))

    def _answer(self, t_s: float, rng: random.Random, bad: bool, ttft: int, gen: int, tokens: int) -> Answer:
        return Answer(None, 200, ttft, gen, tokens, False, 1.0, "", bad)


Behaviour = Annotated[
    Honest | Slow | Flaky | Outage | DiesMidStream | Inflates | Substitutes, Discriminator("kind")
]
