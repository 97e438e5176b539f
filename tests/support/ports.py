"""Loopback ports: pick a free one, wait for one to accept connections."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


# The ports tests choose for the servers they start come from below the kernel's ephemeral range (Linux:
# 32768-60999), which nothing else hands out, each pytest-xdist worker from a slice of its own. A port
# from bind(0) was free only until the server bound it, and another worker's `dragonfly serve` could be
# handed the same port for its control plane meanwhile: the control plane (Robyn) binds with SO_REUSEPORT,
# so both bound it and shared its connections (a chat request answered by a control plane's 404).
PORT_RANGE = (10_000, 32_000)
_cursor: int | None = None


def _worker_slice() -> tuple[int, int]:
    lo, hi = PORT_RANGE
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) % count if worker[2:].isdigit() else 0
    span = (hi - lo) // count
    return lo + index * span, lo + (index + 1) * span


def free_port() -> int:
    """A port free on 127.0.0.1 now and not handed to anyone else (see PORT_RANGE): the next of this
    worker's slice, in turn from a random start, so a port is not reused while a socket of its last user
    may linger."""
    global _cursor
    lo, hi = _worker_slice()
    if _cursor is None or not lo <= _cursor < hi:
        _cursor = random.randrange(lo, hi)
    for _ in range(hi - lo):
        port, _cursor = _cursor, lo + (_cursor + 1 - lo) % (hi - lo)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int, timeout_s: float, *, host: str = LOOPBACK, still_alive: Callable[[], bool] = lambda: True
) -> None:
    """Wait until `host:port` accepts a TCP connection. Raises TimeoutError, or RuntimeError as soon as
    `still_alive()` turns false (the process meant to listen has died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if port_open(port, host):
            return
        if not still_alive():
            raise RuntimeError(f"the process meant to listen on {host}:{port} exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")
        time.sleep(0.05)
