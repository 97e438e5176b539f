"""A throwaway PostgreSQL cluster: initdb into a temp dir, loopback TCP on a free port, trust auth."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support.ports import LOOPBACK, free_port
from support.processes import keep_log_copy
from support.unprivileged import chown_tree, ensure_service_user, is_root, run_as_service_user

SUPERUSER = "dragonfly"
# Durability is irrelevant for a throwaway cluster; speed and enough connections are not.
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"


def find_pg_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres/psql: $DRAGONFLY_PG_BINDIR, PATH (symlinks resolved),
    else the newest /usr/lib/postgresql/*/bin."""
    wanted = ("initdb", "pg_ctl", "postgres", "psql", "pg_isready")
    candidates: list[Path] = []
    if os.environ.get("DRAGONFLY_PG_BINDIR"):
        candidates.append(Path(os.environ["DRAGONFLY_PG_BINDIR"]))
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for directory in candidates:
        if all((directory / name).is_file() for name in wanted):
            return directory
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb, pg_ctl, postgres, psql, pg_isready); "
        "run scripts/ensure-system-deps.sh or `apt-get install postgresql`"
    )


class PostgresCluster:
    def __init__(self) -> None:
        self.bindir = find_pg_bindir()
        self.port = 0
        self.root: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def start(self, attempts: int = 3) -> None:
        # As root the server runs as `dragonfly-test`, so its directory lives under /tmp (reachable by it).
        self.root = Path(tempfile.mkdtemp(prefix="dragonfly-pg-", dir="/tmp" if is_root() else None))
        if is_root():
            chown_tree(self.root, ensure_service_user())
        self._bin(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        for attempt in range(attempts):  # the free port may be taken before the server binds it
            self.port = free_port()
            try:
                self._bin(
                    [
                        "pg_ctl",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_path),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        f"-h {LOOPBACK} -p {self.port} -k {self.root} {_SERVER_OPTIONS}",
                        "start",
                    ]
                )
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log_excerpt()}") from None
        self._wait_ready()

    def _bin(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert self.root is not None
        return run_as_service_user([str(self.bindir / argv[0]), *argv[1:]], cwd=self.root)

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        probe = [str(self.bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port), "-U", SUPERUSER]
        while subprocess.run(probe, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready after {timeout_s}s:\n{self.log_excerpt()}")
            time.sleep(0.1)

    def log_excerpt(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (FileNotFoundError, AssertionError):
            return "(no log)"

    def psql(self, sql: str, database: str = "postgres") -> str:
        argv = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (default name `t_<random>`) and return its name."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"bad database name {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop at once (`-m immediate`) and delete the cluster directory. Idempotent."""
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._bin(["pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
            except RuntimeError:
                pass
        keep_log_copy(self.log_path)  # scanned for secrets with the processes' logs (tests/conftest.py)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
