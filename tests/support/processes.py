"""Subprocesses that tests start and always stop: output goes to a log file shown when a test fails."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from support.ports import wait_for_port

_PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: the child must not dlopen between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the child gets SIGKILL when the thread that started it exits (the test process dying),
    so nothing outlives a crashed run. Hence: start processes from the main thread, not a worker thread."""
    with contextlib.suppress(Exception):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Every log file `start_process` wrote this session, in order: tests/conftest.py scans them for secrets
# when the session ends (tests/support/log_scan.py).
_LOG_PATHS: list[Path] = []


def keep_log(path: Path) -> Path:
    """Have a log the test wrote itself (a process it had to start with `subprocess.Popen`, to read its
    output as it comes or to kill it unlike `start_process` does) scanned with the others."""
    _LOG_PATHS.append(path)
    return path


_KEPT_DIR_PREFIX = "dragonfly-kept-logs-"
_kept_dir: Path | None = None


def keep_log_copy(path: Path) -> None:
    """Have a service's log (a PostgreSQL or Redis server whose directory is about to be deleted) scanned
    with the others: a copy outlives the directory until the scan (`remove_kept_copies`)."""
    global _kept_dir
    if not path.is_file() or "_pytest" not in sys.modules:
        return  # outside a test session (benchmarks use these services too) nobody scans, nor removes
    if _kept_dir is None:
        _kept_dir = Path(tempfile.mkdtemp(prefix=_KEPT_DIR_PREFIX))
    fd, name = tempfile.mkstemp(prefix=path.stem + "-", suffix=path.suffix, dir=_kept_dir)
    os.close(fd)
    shutil.copyfile(path, name)
    if path in _LOG_PATHS:
        _LOG_PATHS.remove(path)  # the copy stands for it
    _LOG_PATHS.append(Path(name))


def remove_kept_copies(paths: Sequence[Path]) -> None:
    """After a scan that found nothing: delete the copies `keep_log_copy` made (in any xdist worker)."""
    for path in paths:
        if path.parent.name.startswith(_KEPT_DIR_PREFIX):
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # once it is empty


def started_log_paths() -> list[Path]:
    """The log file of every process started so far in this session (some may be removed by now)."""
    return list(_LOG_PATHS)


class ProcessStartError(RuntimeError):
    pass


class ManagedProcess:
    def __init__(self, argv: Sequence[str], proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.argv = list(argv)
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr, interleaved)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit status."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self) -> int:
        """SIGKILL at once (crash simulation); returns the exit status."""
        if self.alive:
            self.proc.kill()
        return self.proc.wait()

    def describe(self, tail_chars: int = 20_000) -> str:
        out = self.output()
        if len(out) > tail_chars:
            out = "...\n" + out[-tail_chars:]
        return f"$ {' '.join(self.argv)}\n[exit status: {self.returncode}] output ({self.log_path}):\n{out}"


def start_process(
    argv: Sequence[str],
    ready_port: int | None,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | Path | None = None,
    timeout_s: float = 30.0,
    log_dir: str | Path | None = None,
) -> ManagedProcess:
    """Start `argv` with `env` laid over the current environment, output to a log file, and wait until it
    listens on 127.0.0.1:`ready_port` (if given). If it dies or times out, it is killed and
    ProcessStartError carries its output. The caller stops it (the `processes` fixture does)."""
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="dragonfly-proc-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, log_name = tempfile.mkstemp(prefix=Path(argv[0]).name + "-", suffix=".log", dir=log_dir)
    _LOG_PATHS.append(Path(log_name))
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            preexec_fn=_die_with_parent,
        )
    managed = ManagedProcess(argv, proc, Path(log_name))
    if ready_port is not None:
        try:
            wait_for_port(ready_port, timeout_s, still_alive=lambda: managed.alive)
        except (TimeoutError, RuntimeError) as exc:
            managed.kill()
            raise ProcessStartError(f"{exc}\n{managed.describe()}") from None
    return managed


class ProcessGroup:
    """The processes one test started: all stopped at teardown (the `processes` fixture), their output
    printed when the test failed."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def start(
        self,
        argv: Sequence[str],
        ready_port: int | None,
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | Path | None = None,
        timeout_s: float = 30.0,
    ) -> ManagedProcess:
        proc = start_process(argv, ready_port, env, cwd=cwd, timeout_s=timeout_s, log_dir=self.log_dir)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()

    def dump(self) -> None:
        for proc in self.started:
            sys.stderr.write("\n" + proc.describe() + "\n")
