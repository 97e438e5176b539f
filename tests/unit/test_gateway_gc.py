"""The data plane's collector settings (gateway/app.py `tune_gc`): young collections every 10,000
allocations, start-up objects frozen out of every scan, older generations at CPython's ratios."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dragonfly.gateway.app import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold(restore_gc: None) -> None:
    long_lived = [{"built": "at start-up"} for _ in range(1000)]
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.get_freeze_count() >= len(long_lived)
    # Cycles made after start-up are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
