"""Native calls over big inputs run on a worker thread (the native calls release the GIL), so a huge
prompt or answer never stalls the event loop and every other request on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

# Bodies at or above this size are parsed/counted off the loop.
OFF_LOOP_BYTES = 256 * 1024

_R = TypeVar("_R")


async def native_call(size: int, fn: Callable[..., _R], *args: Any) -> _R:
    if size >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
