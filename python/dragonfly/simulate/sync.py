"""Driving the gateway's in-process state store without an event loop.

`MemoryStateStore` (storage/state/memory.py) runs every admission and settlement without an `await`
between check and update — that is what makes it atomic on one event loop — so its coroutines finish at
their first step. The simulator runs them to completion with one `send`, and refuses (rather than
silently skipping) a coroutine that would really wait: that would be a store the simulator cannot drive.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_sync"]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        coro.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    coro.close()
    raise RuntimeError("the state store suspended: the simulator drives only stores that never await")
