"""Percentiles from sorted samples and from the Locust file's mergeable histograms (µs buckets)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(sorted_samples: Sequence[float], pct: float) -> float:
    if not sorted_samples:
        return float("nan")
    k = max(0, min(len(sorted_samples) - 1, math.ceil(pct / 100 * len(sorted_samples)) - 1))
    return float(sorted_samples[k])


def merge(hists: Iterable[Mapping[Any, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            out[int(k)] = out.get(int(k), 0) + int(v)
    return out


def hist_count(hist: Mapping[int, int]) -> int:
    return sum(hist.values())


def hist_percentile(hist: Mapping[int, int], pct: float) -> float:
    """The value (µs) at `pct` of a bucket → count histogram; NaN when empty."""
    total = hist_count(hist)
    if not total:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def hist_mean(hist: Mapping[int, int]) -> float:
    total = hist_count(hist)
    return sum(k * v for k, v in hist.items()) / total if total else float("nan")
