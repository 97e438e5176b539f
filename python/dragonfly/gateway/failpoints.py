"""Named crash points on the trade path, for the crash-safety tests (ARCHITECTURE.md, Invariants 4).

With `DRAGONFLY_FAILPOINT=<name>` the data-plane worker dies with `os._exit` when a trade reaches that
point, as a kill -9 would; unset (always, in production) `hit` is a single comparison.
"""

from __future__ import annotations

import os
import sys

POINTS = ("after_reserve", "during_upstream", "mid_stream", "before_commit", "after_commit", "after_response")
EXIT_STATUS = 86


class Failpoints:
    def __init__(self, armed: str | None) -> None:
        if armed is not None and armed not in POINTS:
            raise ValueError(f"unknown failpoint {armed!r}; known: {', '.join(POINTS)}")
        self.armed = armed

    def hit(self, name: str) -> None:
        if self.armed == name:
            sys.stderr.write(f"failpoint {name}: exiting\n")
            sys.stderr.flush()
            os._exit(EXIT_STATUS)
