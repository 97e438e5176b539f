"""`dragonfly serve --demo` (what `make run` starts): the README's Quick Start works offline against the
printed key, and SIGTERM stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from openai import OpenAI
from support.ports import free_port, port_open
from support.processes import keep_log


def _children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return {int(x) for x in out.stdout.split()}


def test_demo_quick_start_and_clean_shutdown(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dragonfly.cli",
            "serve",
            "--demo",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "var"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        key = None
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while key is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"Demo buyer key: (sk-df-\S+)", line)
            if match:
                key = match.group(1)
        assert key, "no demo key printed:\n" + "".join(lines)
        # The dashboard is where the printed line says; a sign-up's verification link is printed too.
        (dashboard,) = [m.group(1) for ln in lines if (m := re.search(r"Dashboard: (http://\S+)", ln))]
        assert dashboard == f"http://127.0.0.1:{port}/"
        page = requests.get(dashboard, timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        signup = requests.post(
            f"{dashboard}api/auth/signup",
            json={"email": "new@serve.test", "password": "correct horse battery"},
            timeout=30,
        )
        assert signup.status_code == 201, signup.text
        link = None
        while link is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if match := re.search(r"(http://\S+/verify#token=\S+)", line):
                link = match.group(1)
        assert link and link.startswith(dashboard), "no verification link printed:\n" + "".join(lines)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        resp = client.chat.completions.create(
            model="demo/echo-1", messages=[{"role": "user", "content": "Hello"}]
        )
        assert resp.choices[0].message.content == "Echo: Hello"
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="demo/echo-1", messages=[{"role": "user", "content": "Hello"}], stream=True
            )
            if c.choices
        )
        assert streamed == "Echo: Hello"
        children = _children(proc.pid)
        assert len(children) >= 3  # demo seller, control plane, gateway
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not port_open(port)
        time.sleep(0.5)
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}") and _is_running(pid)]
        assert not alive, f"children still running after SIGTERM: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        lines.append(proc.stdout.read())  # the rest, up to its exit: scanned for secrets with the others
        keep_log(tmp_path / "serve.log").write_text("".join(lines))


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"
