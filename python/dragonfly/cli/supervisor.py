"""Child processes of `dragonfly serve`: start them, wait for their ports, stop them in order."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from dragonfly.lifetime import die_with_parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A free port held for a child that binds it with SO_REUSEPORT (the control plane: Robyn does);
    close the socket once the child listens.

    With `free_port` the port is free again between its pick and the child's bind (~1 s of imports), and
    a second `serve` starting on the host meanwhile can be handed the same port: both control planes then
    bind it, SO_REUSEPORT shares it without an error, and the kernel spreads one gateway's forwarded calls
    over both (the suspected cause of a CI failure: a login forwarded right after `serve` started was
    answered 503, as when the control plane reached is another one, stopping). Held here with
    SO_REUSEPORT and not listening, the port is skipped by every other bind(0) on the host, the child still
    binds it, and no connection is ever routed to this socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, 0))
    except BaseException:
        s.close()
        raise
    return s


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout_s:.0f}s")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    grace_s: float = 10.0  # from SIGTERM to SIGKILL
    host: str = "127.0.0.1"
    port: int = 0
    timeout_s: float = 60.0  # from its start until it must listen

    def wait_ready(self) -> None:
        """Return once the child listens on its port; raise if it exited or its time ran out."""
        wait_for_port(self.host, self.port, self.proc, self.timeout_s)


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        host: str,
        port: int,
        timeout_s: float = 60,
        grace_s: float = 10.0,
        wait: bool = True,
    ) -> Child:
        """Start a child; with `wait` return once it listens on `port`, else at once (call
        `Child.wait_ready` later: several children then start side by side)."""
        me = os.getpid()
        # Its own session (a terminal's ^C reaches only `serve`, which stops children in order), tied to
        # this process's life: a `serve` killed with SIGKILL takes its children along (lifetime.py).
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM, me),
        )
        child = Child(name, proc, grace_s, host, port, timeout_s)
        self.children.append(child)
        if wait:
            child.wait_ready()
        return child

    def any_exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self) -> None:
        """SIGTERM newest first (the gateway drains before the control plane goes), then SIGKILL after
        the child's grace."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + child.grace_s
            while child.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
