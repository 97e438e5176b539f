"""Process lifetime ties: a child of `dragonfly serve` must not outlive it.

`dragonfly serve` starts each child in its own session (so a terminal's ^C reaches only `serve`, which
stops them in order). Without a tie, a `serve` killed with SIGKILL — by an OOM killer, a test harness,
`kill -9` — leaves its gateway running on the public port, and the next `serve` cannot bind it. Linux's
`PR_SET_PDEATHSIG` asks the kernel to signal a process when its parent dies: each direct child of `serve`
gets SIGTERM (a graceful stop; Granian then stops its own workers), and each Granian worker ties itself to
its Granian main process the same way (gateway/app.py)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

_PR_SET_PDEATHSIG = 1
# Resolved at import, in the parent: a child must not load libraries between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; elsewhere nothing).
    `parent`: the pid the parent had when this process was forked; if it is no longer the parent, it
    died before the tie was made and the signal is sent now. Safe between fork and exec (`preexec_fn`):
    no allocation-heavy work, no library loading."""
    if _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on host:port (checked before starting a server there, so that
    `serve` does not mistake another program's listener for its own gateway)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
