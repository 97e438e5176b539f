"""Virtual time: a heap of events, each a callback at a simulated millisecond. No asyncio, no sleeping,
no wall clock: the loop jumps from one event to the next. Ties run in the order they were scheduled, so
a run is deterministic."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["EPOCH_MS", "Clock"]

EPOCH_MS = 1_767_225_600_000
"""Simulated time 0 as a Unix time in milliseconds (2026-01-01T00:00:00Z): what the gateway's code is
given as `now_ms` (a calendar month for key budgets, the native market's EWMA decay, the health window)."""


class Clock:
    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self.now = 0  # simulated milliseconds since the start
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0

    @property
    def now_ms(self) -> int:
        """The current time as the gateway's code sees it (Unix milliseconds)."""
        return EPOCH_MS + self.now

    def at(self, when_ms: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run `fn(arg)` at simulated `when_ms` (never before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when_ms, self.now), self._seq, fn, arg))

    def after(self, delay_ms: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.now + delay_ms, fn, arg)

    def run(self, until_ms: int) -> None:
        """Run every event up to `until_ms` (inclusive)."""
        heap, pop = self._heap, heapq.heappop
        while heap and heap[0][0] <= until_ms:
            when, _, fn, arg = pop(heap)
            self.now = when
            fn(arg)
        self.now = max(self.now, until_ms)

    def step(self) -> None:
        """Run the next event, whenever it is."""
        when, _, fn, arg = heapq.heappop(self._heap)
        self.now = max(self.now, when)
        fn(arg)

    def pending(self) -> int:
        return len(self._heap)
