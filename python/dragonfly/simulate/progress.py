"""A progress line on stderr for long runs (no dependency): redrawn in place on a terminal, a few
plain lines otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ProgressBar"]

WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, *, every: float = 0.1) -> None:
        self._out = stream or sys.stderr
        self._tty = self._out.isatty()
        self._every = every  # without a terminal: one line per this share of the run
        self._last = -1.0

    def __call__(self, done: float, requests: int) -> None:
        done = min(1.0, max(0.0, done))
        if self._tty:
            filled = int(done * WIDTH)
            bar = "#" * filled + "." * (WIDTH - filled)
            self._out.write(f"\r[{bar}] {done * 100:5.1f} %  {requests:,} requests")
            if done >= 1.0:
                self._out.write("\n")
        elif done >= 1.0 or done - self._last >= self._every:
            self._out.write(f"simulated {done * 100:.0f} %: {requests:,} requests\n")
            self._last = done
        self._out.flush()
