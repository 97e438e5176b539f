"""The servers a load run compares, each started by the harness on a free loopback port:

direct     the fake seller itself (Granian RSGI, canned answers)
nginx      nginx (Debian package) as a plain reverse proxy in front of it, access log off
relay      Granian RSGI + Dragonfly's seller client, no gateway logic (`bare_relay.py`): the stack's floor
embedded   `dragonfly serve --no-demo` on a seeded SQLite market (in-process state)
pg-redis   `dragonfly serve --no-demo` on PostgreSQL with DRAGONFLY_REDIS_URL set
litellm    LiteLLM's proxy in its own virtualenv (cache dir), no database, config pointing at the seller
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load import services
from benchmarks.load.services import Proc, free_port

# Mirrors benchmarks/load/seed.py (not imported: that module imports Dragonfly, the harness does not).
SECRET = "bench-secret-not-for-production-0123456789"
CHAT_MODEL = "demo/echo-1"
EMBED_MODEL = "demo/embed-1"


def settings_env(database_url: str, data_dir: str, redis_url: str | None = None) -> dict[str, str]:
    env = {
        "DRAGONFLY_DATABASE_URL": database_url,
        "DRAGONFLY_DATA_DIR": data_dir,
        "DRAGONFLY_SECRET_KEY": SECRET,
        "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1",
        "DRAGONFLY_MAIL_BACKEND": "file",
        "DRAGONFLY_LOG_LEVEL": "warning",
    }
    if redis_url:
        env["DRAGONFLY_REDIS_URL"] = redis_url
    return env


HERE = Path(__file__).resolve().parent
SELLER_KEY = "demo-provider-key"
LITELLM_KEY = "sk-bench-litellm-master"
CACHE = Path(os.environ.get("DRAGONFLY_BENCH_CACHE", Path.home() / ".cache" / "dragonfly-bench"))
LITELLM_VENV = CACHE / "litellm-venv"
ALL_TARGETS = ("direct", "nginx", "relay", "embedded", "pg-redis", "litellm")


@dataclass
class Target:
    name: str
    origin: str
    api_key: str
    models: dict[str, str]  # scenario kind (chat | embed) -> model name
    roots: list[int]  # pids whose process trees are "the server" (CPU and RSS are read from them)
    procs: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def start_fake_seller(
    log_dir: Path,
    *,
    workers: int = 1,
    chunks: int = 20,
    chunk_delay_s: float = 0.0,
    name: str = "fake-seller",
) -> Target:
    port = free_port()
    env = {
        "FAKE_SELLER_API_KEY": SELLER_KEY,
        "FAKE_SELLER_CHUNKS": str(chunks),
        "FAKE_SELLER_CHUNK_DELAY_S": str(chunk_delay_s),
        "PYTHONPATH": str(services.REPO),
    }
    argv = granian_argv(port, workers, "benchmarks.load.fake_seller:create_app")
    proc = services.start(name, argv, log_dir, env=env, ready_port=port, timeout_s=30)
    t = Target("direct", f"http://127.0.0.1:{port}", SELLER_KEY, {"chat": "echo-1", "embed": "echo-1"}, [])
    t.roots, t.procs = [proc.pid], [proc]
    t.extra["port"] = port
    return t


def granian_argv(port: int, workers: int, app: str) -> list[str]:
    """One Granian RSGI server on loopback, flags as the gateway's (`dragonfly serve`)."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "rsgi",
        "--factory",
        "--no-ws",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backlog",
        "4096",
        "--log-level",
        "warning",
        "--no-access-log",
        app,
    ]


def start_bare_relay(log_dir: Path, seller: Target) -> Target:
    port = free_port()
    env = dragonfly_env({"BARE_RELAY_UPSTREAM": f"{seller.origin}/v1", "BARE_RELAY_KEY": SELLER_KEY})
    argv = granian_argv(port, 1, "benchmarks.load.bare_relay:create_app")
    proc = services.start("relay", argv, log_dir, env=env, ready_port=port, timeout_s=30)
    return Target("relay", f"http://127.0.0.1:{port}", SELLER_KEY, dict(seller.models), [proc.pid], [proc])


def start_nginx(log_dir: Path, seller: Target) -> Target:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise RuntimeError("nginx not installed: `apt-get install -y nginx-light` (scripts/bench-deps.sh)")
    port = free_port()
    root = log_dir / "nginx"
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    conf = (HERE / "nginx.conf.template").read_text()
    for k, v in {
        "@DIR@": str(root),
        "@PORT@": str(port),
        "@UPSTREAM_PORT@": str(seller.extra["port"]),
    }.items():
        conf = conf.replace(k, v)
    conf_path = root / "nginx.conf"
    conf_path.write_text(conf)
    proc = services.start(
        "nginx", [nginx, "-c", str(conf_path), "-p", str(root), "-e", "stderr"], log_dir, ready_port=port
    )
    t = Target("nginx", f"http://127.0.0.1:{port}", SELLER_KEY, dict(seller.models), [proc.pid], [proc])
    return t


# Where the measured Dragonfly code comes from: the working tree (default) or an exported commit
# (`--dragonfly-ref`), put first on PYTHONPATH of every Dragonfly process (seeding included).
DRAGONFLY_SRC: Path | None = None


def export_ref(ref: str, cache: Path = CACHE) -> Path:
    """`git archive` a commit of this repository into the cache (read-only for the repository) with the
    working tree's compiled native module copied in; returns the exported tree's root."""
    sha = subprocess.run(
        ["git", "-C", str(services.REPO), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = cache / f"src-{sha[:12]}"
    if not (dest / "python" / "dragonfly").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(services.REPO), "archive", sha, "python"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for so in (services.REPO / "python" / "dragonfly").glob("_native*.so"):
        shutil.copy2(so, dest / "python" / "dragonfly" / so.name)
    return dest


def dragonfly_env(env: dict[str, str], src: Path | None = None) -> dict[str, str]:
    """`src`: this target's own source tree (the A/B run's baseline worktree); default DRAGONFLY_SRC."""
    paths = [str(services.REPO)]
    src = src or DRAGONFLY_SRC
    if src is not None:
        paths.insert(0, str(src / "python"))
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def _serve(name: str, log_dir: Path, env: dict[str, str], src: Path | None = None) -> tuple[Proc, int]:
    port = free_port()
    argv = [sys.executable, "-m", "dragonfly.cli", "serve", "--no-demo", "--port", str(port)]
    proc = services.start(name, argv, log_dir, env=dragonfly_env(env, src), ready_port=port, timeout_s=90)
    return proc, port


def _seed(env: dict[str, str], seller: Target, src: Path | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.load.seed", f"{seller.origin}/v1", SELLER_KEY],
        env={**os.environ, **dragonfly_env(env, src)},
        cwd=services.REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{out.stderr[-3000:]}")
    seeded: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return seeded


def start_dragonfly(
    name: str,
    log_dir: Path,
    seller: Target,
    database_url: str,
    redis_url: str | None = None,
    src: Path | None = None,
) -> Target:
    data_dir = log_dir / f"{name}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = settings_env(database_url, str(data_dir), redis_url)
    market = _seed(env, seller, src)
    proc, port = _serve(name, log_dir, env, src)
    t = Target(
        name,
        f"http://127.0.0.1:{port}",
        market["buyer_key"],
        {"chat": CHAT_MODEL, "embed": EMBED_MODEL},
        [proc.pid],
        [proc],
    )
    if market["embed_note"]:
        t.notes.append(market["embed_note"])
    return t


def start_embedded(log_dir: Path, seller: Target) -> Target:
    db = log_dir / "embedded-data" / "dragonfly.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return start_dragonfly("embedded", log_dir, seller, f"sqlite:///{db}")


def start_pg_redis(log_dir: Path, seller: Target) -> tuple[Target, list[Any]]:
    """Dragonfly on a throwaway PostgreSQL cluster + Redis server; returns the target and the services."""
    owned: list[Any] = []
    try:
        cluster = services.postgres_cluster()
        owned.append(cluster)
        redis = services.redis_server()
        owned.append(redis)
        dbname = cluster.create_database("dragonfly_bench")
        t = start_dragonfly("pg-redis", log_dir, seller, cluster.url(dbname), redis.url)
    except BaseException:
        for s in reversed(owned):
            (s.close if hasattr(s, "close") else s.stop)()
        raise
    t.extra["redis_port"] = redis.port
    t.extra["pg_version"] = cluster.psql("SHOW server_version").strip()
    # The PostgreSQL server and Redis belong to this target's cost: measure them too.
    pg_pid = _pg_postmaster_pid(cluster)
    names = ["dragonfly"] * len(t.roots)
    if pg_pid:
        t.roots.append(pg_pid)
        names.append("postgres")
    if redis._process is not None:
        t.roots.append(redis._process.pid)
        names.append("redis")
    t.extra["root_names"] = names
    return t, owned


def _pg_postmaster_pid(cluster: Any) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def litellm_version() -> str | None:
    py = LITELLM_VENV / "bin" / "python"
    if not py.exists():
        return None
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return out.stdout.strip() or None


def start_litellm(log_dir: Path, seller: Target) -> Target:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        raise RuntimeError(
            f"LiteLLM is not installed in {LITELLM_VENV}: run scripts/bench-deps.sh "
            "(python3.11 -m venv … && pip install 'litellm[proxy]')"
        )
    port = free_port()
    conf = (HERE / "litellm.yaml.template").read_text().replace("@SELLER@", f"{seller.origin}/v1")
    conf = conf.replace("@SELLER_KEY@", SELLER_KEY).replace("@MASTER_KEY@", LITELLM_KEY)
    conf_path = log_dir / "litellm.yaml"
    conf_path.write_text(conf)
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # never fetch the cost map from the network
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        "NO_PROXY": "*",
    }
    argv = [str(exe), "--config", str(conf_path), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    proc = services.start("litellm", argv, log_dir, env=env, ready_port=port, timeout_s=120)
    return Target(
        "litellm",
        f"http://127.0.0.1:{port}",
        LITELLM_KEY,
        {"chat": "echo-1", "embed": "embed-1"},
        [proc.pid],
        [proc],
    )
