"""Weight search (`dragonfly simulate SCENARIO.toml --sweep TARGET --grid | --random N`): run the scenario
once per candidate weight vector and report the Pareto front of cost, TTFT and success.

TARGET is a built-in strategy (`cost_first`, `balanced`, `reliability_first`, `quality_first`): the
candidate replaces the operator's weights of that strategy (`[weights]` in the scenario, what
`PUT /api/admin/routing/weights` sets), for every profile that uses it. Or it is a profile id: that
profile becomes `strategy = "custom"` with the candidate as its weights. The measures are those of the
profiles the candidate acts on, pooled (their requests, charges and TTFTs together).

Candidates are normalised (they sum to 1) and deduplicated by proportion: {price 1, latency 1} and
{price 0.5, latency 0.5} are one. The weights the scenario already uses are always evaluated too (label
`current`). Every run uses the scenario's seed, so candidates meet the same traffic and the same seller
luck (common random numbers), and the search is deterministic for a seed (`--seed` sets both).

A point is on the front when no other point is at least as good on every objective (cost per 1M tokens
and TTFT lower, success rate higher) and better on one; a missing measure counts as the worst.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dragonfly.api.schemas.profiles import Weights
from dragonfly.native.market import FEATURES, OPERATOR_STRATEGIES, default_strategy_weights
from dragonfly.simulate.engine import Engine
from dragonfly.simulate.report import _pct, _table
from dragonfly.simulate.scenario import Scenario

__all__ = [
    "DEFAULT_LEVELS",
    "Point",
    "SweepError",
    "SweepResult",
    "dominates",
    "evaluate",
    "grid_candidates",
    "normalise",
    "pareto_front",
    "random_candidates",
    "render_sweep",
    "run_sweep",
    "with_weights",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
TtftObjective = Literal["p50", "p99"]
WeightVector = dict[str, float]


class SweepError(ValueError):
    """A sweep that cannot run (unknown target, a target no profile uses, no candidate)."""


def normalise(weights: WeightVector) -> WeightVector:
    """Every feature, summing to 1 (rounded to 4 digits: the proportion is the key of deduplication)."""
    total = sum(max(0.0, weights.get(f, 0.0)) for f in FEATURES)
    if total <= 0:
        raise SweepError("at least one weight must be positive")
    return {f: round(max(0.0, weights.get(f, 0.0)) / total, 4) for f in FEATURES}


def _dedup(candidates: Iterable[WeightVector]) -> list[WeightVector]:
    seen: dict[tuple[float, ...], WeightVector] = {}
    for c in candidates:
        n = normalise(c)
        seen.setdefault(tuple(n[f] for f in FEATURES), n)
    return list(seen.values())


def grid_candidates(
    levels: Sequence[float] = DEFAULT_LEVELS, vary: Sequence[str] = FEATURES
) -> list[WeightVector]:
    """Every combination of `levels` over the features in `vary` (the others 0), the all-zero one left
    out, normalised and deduplicated by proportion, in a fixed order."""
    _check_vary(vary)
    out = []
    for combo in itertools.product(sorted(set(levels)), repeat=len(vary)):
        if any(v > 0 for v in combo):
            out.append(dict(zip(vary, combo, strict=True)))
    return _dedup(out)


def random_candidates(n: int, seed: int, vary: Sequence[str] = FEATURES) -> list[WeightVector]:
    """`n` weight vectors drawn uniformly from the simplex over `vary` (seeded), each feature dropped to 0
    with probability 1/3 so that sparse vectors are tried too; deduplicated."""
    _check_vary(vary)
    rng = random.Random(seed)
    out: list[WeightVector] = []
    while len(out) < n:
        draw = {f: (0.0 if rng.random() < 1 / 3 else rng.expovariate(1.0)) for f in vary}
        if any(v > 0 for v in draw.values()):
            out.append(draw)
    return _dedup(out)


def _check_vary(vary: Sequence[str]) -> None:
    unknown = [f for f in vary if f not in FEATURES]
    if unknown or not vary:
        raise SweepError(
            f"unknown weight {unknown[0]!r}; the weights are {', '.join(FEATURES)}"
            if unknown
            else "nothing to vary"
        )


def _targets(sc: Scenario, target: str) -> list[str]:
    """The profiles a candidate for `target` acts on."""
    if target in OPERATOR_STRATEGIES:
        ids = [p.id for p in sc.profiles if p.strategy == target]
        if not ids:
            raise SweepError(f"no profile of scenario {sc.name} uses strategy {target}")
        return ids
    if target == "custom":
        raise SweepError("custom has no weights of its own: sweep a built-in strategy or name a profile")
    if any(p.id == target for p in sc.profiles):
        return [target]
    known = ", ".join([*OPERATOR_STRATEGIES, *(p.id for p in sc.profiles)])
    raise SweepError(f"unknown sweep target {target!r} (a strategy or a profile of the scenario: {known})")


def current_weights(sc: Scenario, target: str) -> WeightVector:
    """The weights the scenario uses for `target` as it stands."""
    if target in OPERATOR_STRATEGIES:
        w = sc.weights.get(target)
        return normalise(w.model_dump() if w is not None else dict(default_strategy_weights()[target]))
    profile = next(p for p in sc.profiles if p.id == target)
    if profile.weights is not None:
        return normalise(profile.weights.model_dump())
    return current_weights(sc, profile.strategy) if profile.strategy in OPERATOR_STRATEGIES else {}


def with_weights(sc: Scenario, target: str, weights: WeightVector) -> Scenario:
    """The scenario with `target`'s weights replaced by `weights`."""
    _targets(sc, target)
    w = Weights(**weights)
    if target in OPERATOR_STRATEGIES:
        return sc.model_copy(update={"weights": {**sc.weights, target: w}})
    return sc.model_copy(
        update={
            "profiles": [
                p.model_copy(update={"strategy": "custom", "weights": w}) if p.id == target else p
                for p in sc.profiles
            ]
        }
    )


@dataclass
class Point:
    index: int
    label: str  # "current", or the candidate's number
    weights: WeightVector
    requests: int
    success_rate: float | None
    cost_per_mtok_usd: float | None
    ttft_ms_p50: float | None
    ttft_ms_p99: float | None
    bad_traffic_share: float | None
    on_front: bool = False

    def ttft_ms(self, which: str) -> float | None:
        return self.ttft_ms_p50 if which == "p50" else self.ttft_ms_p99

    def objectives(self, ttft: str) -> tuple[float, float, float]:
        """All minimised; a missing measure is the worst."""
        inf = float("inf")
        t = self.ttft_ms(ttft)
        return (
            inf if self.cost_per_mtok_usd is None else self.cost_per_mtok_usd,
            inf if t is None else t,
            -(self.success_rate if self.success_rate is not None else -inf),
        )


def evaluate(sc: Scenario, target: str, weights: WeightVector, index: int = 0, label: str = "") -> Point:
    """Run the scenario with `target`'s weights replaced; the pooled measures of its profiles."""
    profiles = _targets(sc, target)
    eng = Engine(with_weights(sc, target, weights))
    eng.run()
    stats = [eng.metrics.profiles[p] for p in profiles]
    requests = sum(s.requests for s in stats)
    completed = sum(s.completed for s in stats)
    charge = sum(s.charge_micros for s in stats)
    tokens = sum(s.billed_tokens for s in stats)
    legs = sum(s.legs for s in stats)
    bad = sum(s.legs_to_bad for s in stats)
    ttft = sorted(itertools.chain.from_iterable(s.ttft_ms for s in stats))
    return Point(
        index=index,
        label=label or str(index),
        weights=weights,
        requests=requests,
        success_rate=round(completed / requests, 6) if requests else None,
        cost_per_mtok_usd=round(charge / tokens, 6) if tokens else None,
        ttft_ms_p50=_pct(ttft, 0.5),
        ttft_ms_p99=_pct(ttft, 0.99),
        bad_traffic_share=round(bad / legs, 6) if legs else None,
    )


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is at least as good as `b` everywhere and better somewhere (all objectives minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(objectives: Sequence[Sequence[float]]) -> list[int]:
    """The indices of the non-dominated vectors, in order."""
    return [
        i
        for i, a in enumerate(objectives)
        if not any(dominates(b, a) for j, b in enumerate(objectives) if j != i)
    ]


@dataclass
class SweepResult:
    scenario: str
    seed: int
    target: str
    profiles: list[str]
    ttft: str
    points: list[Point]

    @property
    def front(self) -> list[Point]:
        return [p for p in self.points if p.on_front]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "target": self.target,
            "profiles": self.profiles,
            "objectives": ["cost_per_mtok_usd (min)", f"ttft_ms_{self.ttft} (min)", "success_rate (max)"],
            "front": [p.index for p in self.front],
            "points": [asdict(p) for p in self.points],
        }


def _job(args: tuple[Scenario, str, WeightVector, int, str]) -> Point:
    return evaluate(*args)


def run_sweep(
    sc: Scenario,
    target: str,
    candidates: Sequence[WeightVector],
    *,
    ttft: TtftObjective = "p50",
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Evaluate the scenario's current weights and every candidate (`jobs` processes); mark the front.
    The result does not depend on `jobs`."""
    profiles = _targets(sc, target)
    current = current_weights(sc, target)
    todo: list[tuple[WeightVector, str]] = []
    if current:
        todo.append((current, "current"))
    todo += [(c, "") for c in _dedup(candidates) if c != current]
    if len(todo) < 2:
        raise SweepError("no candidate weights to try")
    tasks = [(sc, target, w, i, label) for i, (w, label) in enumerate(todo)]
    points: list[Point] = []
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for point in pool.map(_job, tasks):
                points.append(point)
                if progress is not None:
                    progress(len(points), len(tasks))
    else:
        for task in tasks:
            points.append(_job(task))
            if progress is not None:
                progress(len(points), len(tasks))
    for i in pareto_front([p.objectives(ttft) for p in points]):
        points[i].on_front = True
    return SweepResult(sc.name, sc.seed, target, profiles, ttft, points)


def _f(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.2f} %"
    if kind == "usd":
        return f"${value:.4f}"
    if kind == "ms":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def render_sweep(result: SweepResult, *, all_points: bool = False) -> str:
    """The front (sorted by cost), with the current weights' row whether on it or not."""
    rows = [p for p in result.points if p.on_front or p.label == "current" or all_points]
    rows.sort(key=lambda p: p.objectives(result.ttft))
    headers = ["#", *FEATURES, "$/1M tok", "success", "TTFT p50", "TTFT p99", "to bad", "front"]
    body = [
        [
            p.label,
            *(_f(p.weights.get(f, 0.0), "") for f in FEATURES),
            _f(p.cost_per_mtok_usd, "usd"),
            _f(p.success_rate, "pct"),
            _f(p.ttft_ms_p50, "ms"),
            _f(p.ttft_ms_p99, "ms"),
            _f(p.bad_traffic_share, "pct"),
            "*" if p.on_front else "",
        ]
        for p in rows
    ]
    head = (
        f"sweep {result.target} over scenario {result.scenario}  seed {result.seed}  "
        f"profiles {', '.join(result.profiles)}\n"
        f"{len(result.points)} weight vectors, {len(result.front)} on the Pareto front "
        f"(min cost, min TTFT {result.ttft}, max success)\n"
    )
    return head + "\n" + "\n".join(line.rstrip() for line in _table(headers, body))
