"""Random quantities a scenario describes (latencies, throughput, token counts) and values that change
over simulated time (a request rate, a failure rate). Sampling takes the engine's one `random.Random`, so
a run is deterministic for its seed.

In a scenario file a distribution is a number (a constant) or a table with `dist`:

    ttft_ms = { dist = "lognormal", median = 400, sigma = 0.4 }
    completion_tokens = { dist = "uniform", low = 50, high = 400 }
    prompt_tokens = 800

and every kind takes optional `min` / `max` bounds. A curve is a number (constant) or a list of
`[time_s, value]` points: `step` curves hold each value until the next point, `linear` ones interpolate
between points; before the first point the first value holds, after the last the last.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    model_validator,
)

__all__ = ["Curve", "Dist", "curve"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Bounded(_Strict):
    min: float | None = None
    max: float | None = None

    def _clamp(self, x: float) -> float:
        if self.min is not None and x < self.min:
            return self.min
        if self.max is not None and x > self.max:
            return self.max
        return x

    @model_validator(mode="after")
    def _ordered_bounds(self) -> _Bounded:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def sample(self, rng: random.Random) -> float:
        raise NotImplementedError


class Constant(_Bounded):
    dist: Literal["constant"] = "constant"
    value: float = Field(ge=0)

    def sample(self, rng: random.Random) -> float:
        return self.value


class LogNormal(_Bounded):
    """`median` and `sigma` (the standard deviation of the log): p99 is median x exp(2.33 sigma)."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(ge=0, le=5)

    def sample(self, rng: random.Random) -> float:
        return self._clamp(self.median * math.exp(rng.gauss(0.0, self.sigma)))


class Normal(_Bounded):
    """Negative draws are clamped to 0 (or `min`)."""

    dist: Literal["normal"]
    mean: float = Field(ge=0)
    sd: float = Field(ge=0)

    def sample(self, rng: random.Random) -> float:
        return max(0.0, self._clamp(rng.gauss(self.mean, self.sd)))


class Uniform(_Bounded):
    dist: Literal["uniform"]
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self

    def sample(self, rng: random.Random) -> float:
        return self._clamp(rng.uniform(self.low, self.high))


def _number_is_constant(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


Dist = Annotated[
    Annotated[Constant | LogNormal | Normal | Uniform, Discriminator("dist")],
    BeforeValidator(_number_is_constant),
]


class Curve(_Strict):
    """A value over simulated time: `points` are `(time_s, value)` in increasing time."""

    points: tuple[tuple[float, float], ...]
    linear: bool = False
    _times: list[float] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _increasing(self) -> Curve:
        if not self.points:
            raise ValueError("a curve needs at least one [time_s, value] point")
        times = [t for t, _ in self.points]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("curve points must be in strictly increasing time")
        if any(t < 0 or v < 0 for t, v in self.points):
            raise ValueError("curve times and values must be non-negative")
        self._times = times
        return self

    def at(self, t_s: float) -> float:
        pts = self.points
        if len(pts) == 1 or t_s <= pts[0][0]:
            return pts[0][1]
        i = bisect.bisect_right(self._times, t_s) - 1
        if i >= len(pts) - 1:
            return pts[-1][1]
        t0, v0 = pts[i]
        if not self.linear:
            return v0
        t1, v1 = pts[i + 1]
        return v0 + (v1 - v0) * (t_s - t0) / (t1 - t0)

    def peak(self) -> float:
        return max(v for _, v in self.points)

    def scaled_time(self, factor: float) -> Curve:
        return Curve(points=tuple((t * factor, v) for t, v in self.points), linear=self.linear)

    def above(self, threshold: float, until_s: float) -> list[tuple[float, float]]:
        """The time spans (start_s, end_s) within [0, until_s) where the curve is above `threshold`
        (exact for step curves; for linear ones, at the points' resolution)."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        times = [0.0, *[t for t, _ in self.points if 0 < t < until_s]]
        for t in times:
            high = self.at(t) > threshold
            if high and start is None:
                start = t
            elif not high and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, until_s))
        return spans


def curve(linear: bool) -> Any:
    """The validator of a curve field, `Annotated[Curve, curve(linear=...)]`: a number is a constant,
    a list the curve's points."""

    def parse(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"points": [(0.0, value)], "linear": linear}
        if isinstance(value, list):
            return {"points": value, "linear": linear}
        return value

    return BeforeValidator(parse)
