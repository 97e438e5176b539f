"""Request statistics the demo seller keeps for tests (`GET /_stats`, `POST /_reset`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SellerStats:
    requests: int = 0  # inference requests received (chat, embeddings, speech), whatever their outcome
    concurrent: int = 0  # inference requests open right now
    max_concurrent: int = 0  # peak of `concurrent` since the last reset
    cancelled: int = 0  # streams the client abandoned before the end
    completed: int = 0  # inference requests answered in full
    by_model: dict[str, int] = field(default_factory=dict)
    last_request: dict[str, Any] | None = None  # the last inference request body, as JSON
    connections: int = 0  # distinct client connections that sent inference requests (keep-alive reuse)
    _peers: set[Any] = field(default_factory=set, repr=False)

    @contextmanager
    def track(self, peer: Any = None) -> Iterator[None]:
        if peer is not None and peer not in self._peers:
            self._peers.add(peer)
            self.connections = len(self._peers)
        self.requests += 1
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            yield
        finally:
            self.concurrent -= 1

    def record(self, model: str, body: dict[str, Any]) -> None:
        self.by_model[model] = self.by_model.get(model, 0) + 1
        self.last_request = body

    def reset(self) -> None:
        """Zero the counters; `concurrent` keeps counting the requests still open."""
        open_now = self.concurrent
        fresh = SellerStats(concurrent=open_now, max_concurrent=open_now)
        self.__dict__.update(fresh.__dict__)

    def snapshot(self) -> dict[str, Any]:
        out = asdict(self)
        del out["_peers"]
        return out
