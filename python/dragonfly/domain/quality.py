"""A listing's quality score in [0, 1], the `quality` feature of the routing score.

Source, in order:
  1. the operator's override (`PUT /api/admin/listings/:id/quality`), used as is;
  2. else the probe score `P`: over the listing's last `PROBE_WINDOW` probe runs (workers/probes.py,
     admission and re-verification), the mean of each run's share of passed checks — 0.5 when it has no
     run yet — which the native market blends with live success once the listing has real outcomes on
     that gateway: `(P + success EWMA) / 2` (the success EWMA is the one `Market.record_result` keeps,
     α = 0.1, the same that feeds the reliability feature).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROBE_WINDOW = 10
"""How many of a listing's most recent probe runs its probe score averages."""
NEUTRAL_QUALITY = 0.5
"""The quality of a listing with neither an override nor a probe run: neither buried nor favoured."""


def run_score(checks: Iterable[Mapping[str, Any]]) -> float:
    """One probe run's share of passed checks (a run stops at its first failed check, so a listing that
    fails early scores lower than one that fails late). A run with no checks scores 0."""
    results = [bool(c.get("passed")) for c in checks]
    return sum(results) / len(results) if results else 0.0


def probe_quality(runs: Iterable[Iterable[Mapping[str, Any]]]) -> float | None:
    """The mean run score of the given runs (newest `PROBE_WINDOW` expected); None without runs."""
    scores = [run_score(r) for r in runs]
    return sum(scores) / len(scores) if scores else None


def market_quality(probe: float | None, override: float | None) -> tuple[float, bool]:
    """What the native market gets: the quality term (clamped to [0, 1]) and whether to blend live
    success into it."""
    if override is not None:
        return _unit(override), False
    return (NEUTRAL_QUALITY if probe is None else _unit(probe)), True


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value)) if value == value else NEUTRAL_QUALITY  # NaN -> neutral
