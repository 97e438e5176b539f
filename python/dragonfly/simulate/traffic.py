"""Buyer traffic: when requests arrive (a Poisson process whose rate follows the scenario's curve,
drawn by thinning) and what each asks for (profile, model, prompt and answer sizes, stream or not)."""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass

from dragonfly.simulate.scenario import Profile, Scenario

__all__ = ["Request", "Traffic"]


@dataclass(slots=True)
class Request:
    n: int  # the request's number in the run (its id is `sim-<n>`)
    profile: int  # index into the scenario's profiles
    model: str
    prompt_tokens: int  # Dragonfly's count of the prompt
    completion_tokens: int  # what an honest seller would answer (at most max_tokens)
    max_tokens: int | None
    stream: bool


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


class Traffic:
    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._rng = rng
        self._rate = scenario.traffic.rate
        self._peak = self._rate.peak()
        self._end_ms = int(scenario.duration_s * 1000)
        self._profiles = scenario.profiles
        self._profile_cum = _cumulative([p.share for p in scenario.profiles])
        all_models = [m.id for m in scenario.models]
        self._models: list[tuple[list[str], list[float]]] = []
        for p in scenario.profiles:
            wanted = p.models or dict.fromkeys(all_models, 1.0)
            self._models.append((list(wanted), _cumulative(list(wanted.values()))))
        self._n = 0

    def next_arrival(self, t_ms: int) -> int | None:
        """The next arrival after `t_ms` (None: none before the end)."""
        if self._peak <= 0:
            return None
        rng, t = self._rng, t_ms / 1000
        while True:
            t += rng.expovariate(self._peak)
            if t * 1000 >= self._end_ms:
                return None
            if rng.random() * self._peak < self._rate.at(t):
                return int(t * 1000)

    def request(self) -> Request:
        rng = self._rng
        i = _pick(rng, self._profile_cum)
        p: Profile = self._profiles[i]
        names, cum = self._models[i]
        model = names[_pick(rng, cum)]
        prompt = max(1, int(p.prompt_tokens.sample(rng)))
        completion = max(1, int(p.completion_tokens.sample(rng)))
        if p.max_tokens is not None:
            completion = min(completion, p.max_tokens)
        self._n += 1
        return Request(self._n, i, model, prompt, completion, p.max_tokens, rng.random() < p.stream_share)


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    if len(cumulative) == 1:
        return 0
    return min(len(cumulative) - 1, bisect.bisect_right(cumulative, rng.random() * cumulative[-1]))
