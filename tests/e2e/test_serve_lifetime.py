"""`dragonfly serve` and the processes it starts live and die together: a `serve` killed with SIGKILL
(no chance to stop its children) takes its whole tree with it and frees the public port, so the next
`serve` can bind it; and `serve` refuses a port another program already listens on instead of
reporting that program's listener as its own gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.ports import free_port, port_open, wait_for_port
from support.processes import keep_log

SERVE = [sys.executable, "-m", "dragonfly.cli", "serve"]


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True, check=False
        )
        kids = {int(x) for x in out.stdout.split()}
        found |= kids
        todo += kids
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _serve(port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with keep_log(log).open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dragonfly.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def test_a_killed_serve_takes_its_children_and_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(port, tmp_path / "var", tmp_path / "serve.log")
    tree: set[int] = set()
    try:
        wait_for_port(port, timeout_s=90)
        deadline = time.monotonic() + 30
        # The control plane and Granian's main and worker processes.
        while len(tree := _descendants(proc.pid)) < 3:
            assert time.monotonic() < deadline, (tree, (tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while (alive := [p for p in tree if _running(p)]) or port_open(port):
            assert time.monotonic() < deadline, f"still running after serve was killed: {alive}"
            time.sleep(0.1)
        # The next serve binds the same port.
        again = _serve(port, tmp_path / "var", tmp_path / "again.log")
        try:
            wait_for_port(port, timeout_s=90)
            assert again.poll() is None
        finally:
            again.send_signal(signal.SIGTERM)
            assert again.wait(timeout=30) == 0
    finally:
        for pid in [proc.pid, *tree]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_serve_refuses_a_port_someone_else_listens_on(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dragonfly.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    keep_log(tmp_path / "refused.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"127.0.0.1:{port} is already in use" in done.stderr
    assert "serving" not in done.stdout
