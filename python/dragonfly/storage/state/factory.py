"""Choose the state store from Settings: in-process for the embedded default, Redis when configured."""

from __future__ import annotations

from dragonfly.config import Settings
from dragonfly.storage.state.base import BaseStateStore
from dragonfly.storage.state.memory import MemoryStateStore


def make_state_store(settings: Settings) -> BaseStateStore:
    if settings.redis_url is None:
        return MemoryStateStore()
    from dragonfly.storage.state.redis import RedisStateStore

    return RedisStateStore(settings.redis_url)
