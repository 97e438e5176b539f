"""Running service binaries as an unprivileged user when the tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

SERVICE_USER = "dragonfly-test"


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_service_user() -> pwd.struct_passwd:
    """The `dragonfly-test` system user, created with `useradd --system` if missing (root only)."""
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
        raise RuntimeError(f"useradd {SERVICE_USER} failed: {result.stderr.strip()}")
    return pwd.getpwnam(SERVICE_USER)


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    os.chown(path, user.pw_uid, user.pw_gid)


def run_as_service_user(
    argv: list[str], *, cwd: Path, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion, as `dragonfly-test` when we are root, else as ourselves; raises with the
    command's output on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    user: pwd.struct_passwd | None = None
    if is_root():
        user = ensure_service_user()
        env["HOME"] = str(cwd)
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result
