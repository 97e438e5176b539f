"""A throwaway Redis server on a free loopback port; can be stopped and restarted on the same port."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from support.ports import LOOPBACK, free_port
from support.processes import ManagedProcess, keep_log_copy, start_process


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; run scripts/ensure-system-deps.sh")
        self.binary = binary
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dragonfly-redis-"))
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive

    def start(self, timeout_s: float = 15.0) -> None:
        if self.running:
            return
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.root),
        ]
        self._process = start_process(argv, self.port, log_dir=self.root, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis not answering PING:\n{self._process.describe()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); `start()` brings it back on the same port, empty."""
        if self._process is not None:
            self._process.stop(timeout_s=5.0)
            self._process = None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process = None

    def command(self, *parts: str) -> bytes:
        """Send one inline command; returns the first reply line (e.g. b'+PONG')."""
        with socket.create_connection((LOOPBACK, self.port), timeout=2.0) as sock:
            sock.sendall(" ".join(parts).encode() + b"\r\n")
            return sock.makefile("rb").readline().rstrip(b"\r\n")

    def ping(self) -> bool:
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        if self.command("FLUSHALL") != b"+OK":
            raise RuntimeError("redis FLUSHALL failed")

    def close(self) -> None:
        self.stop()
        for log in self.root.glob("*.log"):
            keep_log_copy(log)  # scanned for secrets with the processes' logs (tests/conftest.py)
        shutil.rmtree(self.root, ignore_errors=True)
