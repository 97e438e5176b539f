"""Start a coroutine now, finish it later: Python 3.12's eager task start, for the one place the data
plane needs it on 3.11.

`start_now(coro)` runs `coro` in the caller, up to its first suspension, before returning; the
awaitable it returns runs the rest in whatever task awaits it. Used to hand a trade's settlement to the
state store (the Redis client writes its command on its connection in that first step) *before* the
answer goes out, and to wait for Redis's reply only after (gateway/chat.py `Inference._settle`).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class _Rest(Generic[_T]):
    """The rest of a started coroutine: passes what it waits on to the awaiting task and resumes it."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, _T], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, _T]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                value = yield waiting
            except BaseException as exc:  # thrown into the awaiting task (cancellation): pass it on
                try:
                    waiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                waiting = coro.send(value)
            except StopIteration as stop:
                return stop.value


class _Finished(Generic[_T]):
    """A coroutine that finished (or failed) in its first step: awaiting it gives its result."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: _T | None, error: Exception | None) -> None:
        self._value = value
        self._error = error

    def __await__(self) -> Generator[Any, Any, _T]:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
        yield  # a generator: `await` needs an iterator


def start_now(coro: Coroutine[Any, Any, _T]) -> _Rest[_T] | _Finished[_T]:
    """Run `coro` up to its first suspension now; await the result for the rest (exactly once). An
    exception raised in that first step is raised where the result is awaited, not here."""
    try:
        waiting = coro.send(None)
    except StopIteration as stop:
        return _Finished(stop.value, None)
    except Exception as exc:
        return _Finished(None, exc)
    return _Rest(coro, waiting)
