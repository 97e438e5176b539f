"""Processes the harness starts and measures: start with a log file and wait for the port, stop the whole
process group, and read CPU time and RSS of a process tree from /proc.

PostgreSQL and Redis come from the test suite's throwaway-service helpers (`tests/support`, put on
sys.path here and nowhere else) so that their root/unprivileged-user handling exists once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def git_export(sha: str, paths: Sequence[str], dest: Path) -> None:
    """Extract `paths` of commit `sha` of this repository into `dest` (`git archive | tar -x`); the
    repository itself is only read."""
    git = ["git", "-C", str(REPO), "archive", sha, *paths]
    archive = subprocess.run(git, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # child, between fork and exec
    with contextlib.suppress(Exception):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Proc:
    """One started process (its own session/process group; killed if the harness dies)."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Leftovers of the group (workers that outlived their parent).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready_port: int | None = None,
    timeout_s: float = 60.0,
    cwd: Path = REPO,
) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    proc = Proc(name, argv, log_path, popen)
    if ready_port is not None:
        deadline = time.monotonic() + timeout_s
        while not port_open(ready_port):
            if not proc.alive or time.monotonic() > deadline:
                proc.stop(2)
                why = (
                    "exited" if proc.proc.returncode is not None else f"not listening after {timeout_s:.0f}s"
                )
                raise RuntimeError(f"{name} {why} (port {ready_port}):\n{proc.tail()}")
            time.sleep(0.05)
    return proc


# --- /proc accounting ---------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads) plus cutime + cstime (their children that
    exited and were reaped), in seconds. Without the children's share a tree whose processes come and go
    (PostgreSQL backends) loses CPU between two readings: one run showed -159 µs per request."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


class TreeMeter:
    """CPU seconds of process trees between start() and stop(), and their peak summed RSS (sampled)."""

    def __init__(self, roots: Sequence[int], interval_s: float = 0.2) -> None:
        self.roots = list(roots)
        self.interval_s = interval_s
        self.cpu_s = 0.0
        self.cpu_by_root: dict[int, float] = {}  # the same CPU seconds, split by root process tree
        self.rss_start = 0
        self.rss_peak = 0
        self._cpu0 = 0.0
        self._cpu0_by_root: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        return [p for r in self.roots for p in tree(r)]

    def start(self) -> TreeMeter:
        pids = self.pids()
        self._cpu0 = cpu_seconds(pids)
        self._cpu0_by_root = {r: cpu_seconds(tree(r)) for r in self.roots}
        self.rss_start = self.rss_peak = rss_bytes(pids)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.rss_peak = max(self.rss_peak, rss_bytes(self.pids()))

    def stop(self) -> TreeMeter:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        pids = self.pids()
        self.rss_peak = max(self.rss_peak, rss_bytes(pids))
        self.cpu_s = cpu_seconds(pids) - self._cpu0
        self.cpu_by_root = {r: cpu_seconds(tree(r)) - self._cpu0_by_root.get(r, 0.0) for r in self.roots}
        return self


# --- PostgreSQL and Redis (the test suite's helpers) --------------------------------------------------


def _support() -> Any:
    tests_dir = str(REPO / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import support.services as services  # the throwaway PostgreSQL/Redis helpers of the test suite

    return services


def postgres_cluster() -> Any:
    """A started throwaway PostgreSQL cluster (fsync off); call `.stop()` when done."""
    cluster = _support().PostgresCluster()
    cluster.start()
    return cluster


def redis_server() -> Any:
    """A started throwaway Redis server (no persistence); call `.close()` when done."""
    server = _support().RedisServer()
    server.start()
    return server


def redis_commands_processed(port: int) -> int:
    """INFO stats total_commands_processed, to tell whether a server really talks to Redis."""
    with socket.create_connection((LOOPBACK, port), timeout=2.0) as sock:
        sock.sendall(b"INFO stats\r\n")
        data = b""
        while b"total_commands_processed:" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.split(b"\r\n"):
        if line.startswith(b"total_commands_processed:"):
            return int(line.split(b":")[1])
    return -1
