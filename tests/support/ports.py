"""Loopback ports: pick a free one, wait for one to accept connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


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
