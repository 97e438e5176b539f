"""Launching the demo seller for tests: in a background thread, or as a subprocess."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from support.ports import free_port
from support.processes import ManagedProcess, ProcessGroup


def seller_argv(port: int, **knobs: Any) -> list[str]:
    """`python -m dragonfly.demo.seller` argv for the given DemoSeller knobs (snake_case names)."""
    argv = [sys.executable, "-m", "dragonfly.demo.seller", "--port", str(port)]
    for name, value in knobs.items():
        flag = "--" + name.replace("_", "-")
        if name == "models":
            for model in value:
                argv += ["--model", model]
        elif isinstance(value, bool):
            if value:
                argv.append(flag)
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def start_seller_process(
    processes: ProcessGroup, env: Mapping[str, str] | None = None, **knobs: Any
) -> tuple[ManagedProcess, str]:
    """Start `python -m dragonfly.demo.seller` with these knobs in the test's process group (stopped at
    teardown); returns the process and its OpenAI base URL."""
    port = free_port()
    proc = processes.start(seller_argv(port, **knobs), port, env)
    return proc, f"http://127.0.0.1:{port}/v1"
