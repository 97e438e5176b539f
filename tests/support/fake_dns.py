"""A fake DNS for tests: `socket.getaddrinfo` answers the names a test chose from a JSON file the test
writes, in every process that installs it, and passes every other name to the real resolver.

Each chosen name has a list of answers, given one per lookup with the last one repeated; the lookups are
counted in the file under a lock, across processes, as one DNS server would count them. So
`answer("seller.rebind.test", "93.184.215.14", "127.0.0.1")` is a rebinding name: public the first time
anyone asks, loopback from then on. Every lookup is logged with the process that made it.

A process installs it with `install(path)`; the processes a test starts install it by themselves when
their environment has `env(path)`: `fake_dns_site/` on PYTHONPATH holds a `sitecustomize` that does it
when DRAGONFLY_TEST_FAKE_DNS names the file. Imports nothing from the tests, so it loads anywhere.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "DRAGONFLY_TEST_FAKE_DNS"
SITE = Path(__file__).resolve().parent / "fake_dns_site"

_real_getaddrinfo = socket.getaddrinfo


class FakeDns:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            path.write_text(json.dumps({"names": {}, "log": []}))

    def answer(self, name: str, *answers: str) -> None:
        """From now on `name` answers these addresses, one per lookup (the last one repeated)."""
        with _locked(self.path) as state:
            state["names"][name.lower()] = {"answers": list(answers), "served": 0}

    def lookups(self, name: str) -> list[tuple[str, int]]:
        """(address answered, pid of the process that asked) for every lookup of `name` so far."""
        with _locked(self.path) as state:
            return [(address, pid) for host, address, pid in state["log"] if host == name.lower()]

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to install this fake DNS at start."""
        path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
        return {ENV: str(self.path), "PYTHONPATH": path}


def install(path: str | Path) -> Callable[[], None]:
    """Answer from `path` in this process; returns the function that puts the real resolver back."""
    file = Path(path)

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and not _is_address(name):
            with _locked(file) as state:
                entry = state["names"].get(name.rstrip(".").lower())
                if entry is not None:
                    answers = entry["answers"]
                    address = answers[min(entry["served"], len(answers) - 1)]
                    entry["served"] += 1
                    state["log"].append([name.rstrip(".").lower(), address, os.getpid()])
            if entry is not None:
                return _infos(address, port, family, type)
        return _real_getaddrinfo(host, port, family, type, proto, flags)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]

    def uninstall() -> None:
        socket.getaddrinfo = _real_getaddrinfo

    return uninstall


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _infos(address: str, port: Any, family: int, type: int) -> list[Any]:
    found = socket.AF_INET6 if ":" in address else socket.AF_INET
    if family not in (0, found):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if isinstance(port, bytes):
        port = port.decode()
    number = 0 if port in (None, "") else int(port) if str(port).isdigit() else socket.getservbyname(port)
    sockaddr = (address, number, 0, 0) if found == socket.AF_INET6 else (address, number)
    kinds = [type] if type else [socket.SOCK_STREAM]
    return [
        (found, kind, socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else 0, "", sockaddr) for kind in kinds
    ]


class _locked:
    """The state file, read under an exclusive lock and written back when the block ends."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> dict[str, Any]:
        self.fh = open(self.path, "r+", encoding="utf-8")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        self.state: dict[str, Any] = json.load(self.fh)
        return self.state

    def __exit__(self, *exc: object) -> None:
        try:
            self.fh.seek(0)
            self.fh.truncate()
            json.dump(self.state, self.fh)
            self.fh.flush()
        finally:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
