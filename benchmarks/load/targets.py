"""The servers a load run compares, each started by the harness on a free loopback port:

direct     the fake seller itself (Granian RSGI, canned answers)
nginx      nginx (Debian package) as a plain reverse proxy in front of it, access log off
relay      Granian RSGI + Dragonfly's seller client, no gateway logic (`bare_relay.py`): the stack's floor
embedded   `dragonfly serve --no-demo` on a seeded SQLite market (in-process state)
pg-redis   `dragonfly serve --no-demo` on PostgreSQL with DRAGONFLY_REDIS_URL set
litellm    LiteLLM's proxy in its own virtualenv (cache dir), no database, config pointing at the seller

Not in the default run (ask for it with --targets):

pg-redis-x2  scale-out: two `dragonfly serve --no-demo` instances on ONE PostgreSQL + ONE Redis (one seeded
             market, the same buyer key on both) behind nginx (round robin, keepalive upstream, buffering
             off); its CPU is both instances' trees + PostgreSQL + Redis + nginx, split by part
answer       Granian answering with canned bodies by itself (`bare_answer.py`): a worker's cost before any
             relaying; the relay minus it is what the seller client costs
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
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
OPTIONAL_TARGETS = ("pg-redis-x2", "answer")  # started only when named in --targets


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


def start_bare_answer(log_dir: Path, seller: Target) -> Target:
    """Granian answering by itself (`bare_answer.py`): what a worker costs before any relaying."""
    port = free_port()
    argv = granian_argv(port, 1, "benchmarks.load.bare_answer:create_app")
    proc = services.start("answer", argv, log_dir, env={"PYTHONPATH": str(services.REPO)}, ready_port=port)
    return Target("answer", f"http://127.0.0.1:{port}", SELLER_KEY, dict(seller.models), [proc.pid], [proc])


def nginx_binary() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise RuntimeError("nginx not installed: `apt-get install -y nginx-light` (scripts/bench-deps.sh)")
    return nginx


_UPSTREAM_LINE = re.compile(r"^(?P<indent>[ \t]*)server 127\.0\.0\.1:@UPSTREAM_PORT@;[ \t]*$", re.M)


def render_nginx_conf(
    template: str,
    *,
    root: Path,
    port: int,
    upstream_ports: Sequence[int],
    upstream_keepalive_timeout: str = "60s",
) -> str:
    """nginx.conf.template filled in: its one upstream `server` line becomes one line per port (round
    robin, nginx's default), in order. `upstream_keepalive_timeout`: how long nginx keeps an idle upstream
    connection (60 s is nginx's default); in front of Dragonfly it must be below the gateway's idle limit
    (its 10 s header-read timeout, as deploy/nginx.conf's 5 s), or nginx reuses a connection the gateway
    is closing and a POST fails with 502."""
    if not upstream_ports:
        raise ValueError("at least one upstream port")
    if len(_UPSTREAM_LINE.findall(template)) != 1:
        raise ValueError("the template must have exactly one `server 127.0.0.1:@UPSTREAM_PORT@;` line")

    def servers(m: re.Match[str]) -> str:
        return "\n".join(f"{m.group('indent')}server 127.0.0.1:{p};" for p in upstream_ports)

    conf = _UPSTREAM_LINE.sub(servers, template)
    for k, v in {
        "@DIR@": str(root),
        "@PORT@": str(port),
        "@UPSTREAM_KEEPALIVE_TIMEOUT@": upstream_keepalive_timeout,
    }.items():
        conf = conf.replace(k, v)
    if "@" in re.sub(r"#.*", "", conf):
        raise ValueError("a placeholder of the template was left unfilled")
    return conf


def _start_nginx_proc(
    name: str, log_dir: Path, upstream_ports: Sequence[int], upstream_keepalive_timeout: str = "60s"
) -> tuple[Proc, int]:
    nginx = nginx_binary()
    port = free_port()
    root = log_dir / name
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    conf = render_nginx_conf(
        (HERE / "nginx.conf.template").read_text(),
        root=root,
        port=port,
        upstream_ports=upstream_ports,
        upstream_keepalive_timeout=upstream_keepalive_timeout,
    )
    conf_path = root / "nginx.conf"
    conf_path.write_text(conf)
    proc = services.start(
        name, [nginx, "-c", str(conf_path), "-p", str(root), "-e", "stderr"], log_dir, ready_port=port
    )
    return proc, port


def start_nginx(log_dir: Path, seller: Target) -> Target:
    proc, port = _start_nginx_proc("nginx", log_dir, [seller.extra["port"]])
    t = Target("nginx", f"http://127.0.0.1:{port}", SELLER_KEY, dict(seller.models), [proc.pid], [proc])
    return t


# Where the measured Dragonfly code comes from: the working tree (default) or an exported commit
# (`--dragonfly-ref`), put first on PYTHONPATH of every Dragonfly process (seeding included).
DRAGONFLY_SRC: Path | None = None


def export_ref(ref: str, cache: Path = CACHE) -> Path:
    """`git archive` a commit of this repository into the cache (read-only for the repository) with the
    commit's native module copied in (`native_build`); returns the exported tree's root."""
    sha = subprocess.run(
        ["git", "-C", str(services.REPO), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = cache / f"src-{sha[:12]}"
    if not (dest / "python" / "dragonfly").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        services.git_export(sha, ["python"], dest)
    from benchmarks.load import native_build  # imports this module

    print(f"  {ref} = {sha[:7]} runs with {native_build.install(sha, dest)}", flush=True)
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


def start_embedded(log_dir: Path, seller: Target, name: str = "embedded", src: Path | None = None) -> Target:
    db = log_dir / f"{name}-data" / "dragonfly.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return start_dragonfly(name, log_dir, seller, f"sqlite:///{db}", src=src)


def start_pg_redis(
    log_dir: Path, seller: Target, name: str = "pg-redis", src: Path | None = None
) -> tuple[Target, list[Any]]:
    """Dragonfly on a throwaway PostgreSQL cluster + Redis server; returns the target and the services."""
    owned: list[Any] = []
    try:
        cluster = services.postgres_cluster()
        owned.append(cluster)
        redis = services.redis_server()
        owned.append(redis)
        dbname = cluster.create_database("dragonfly_bench")
        t = start_dragonfly(name, log_dir, seller, cluster.url(dbname), redis.url, src=src)
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


def start_pg_redis_x2(log_dir: Path, seller: Target) -> tuple[Target, list[Any]]:
    """Scale-out: two `dragonfly serve` instances (each its own process tree: control plane + data plane)
    on one PostgreSQL + one Redis, seeded once (the same market and buyer key on both), behind nginx. The
    instances start one after the other (each migrates the database when it starts)."""
    name = "pg-redis-x2"
    owned: list[Any] = []
    procs: list[Proc] = []
    try:
        cluster = services.postgres_cluster()
        owned.append(cluster)
        redis = services.redis_server()
        owned.append(redis)
        url = cluster.url(cluster.create_database("dragonfly_bench"))
        envs = []
        for i in (1, 2):
            data_dir = log_dir / f"{name}-data-{i}"  # each its own metrics directory; the secret is shared
            data_dir.mkdir(parents=True, exist_ok=True)
            envs.append(settings_env(url, str(data_dir), redis.url))
        market = _seed(envs[0], seller)
        ports = []
        for i, env in enumerate(envs, 1):
            proc, port = _serve(f"{name}-{i}", log_dir, env)
            procs.append(proc)
            ports.append(port)
        origins = [f"http://127.0.0.1:{p}" for p in ports]
        for origin in origins:  # the one seeded key and listing answer on each instance, not only via nginx
            check_chat(origin, market["buyer_key"], CHAT_MODEL)
        lb, lb_port = _start_nginx_proc(f"{name}-nginx", log_dir, ports, upstream_keepalive_timeout="5s")
        procs.append(lb)
    except BaseException:
        for p in reversed(procs):
            p.stop()
        for s in reversed(owned):
            (s.close if hasattr(s, "close") else s.stop)()
        raise
    roots = [p.pid for p in procs[:2]]
    names = ["dragonfly-1", "dragonfly-2"]
    pg_pid = _pg_postmaster_pid(cluster)
    if pg_pid:
        roots.append(pg_pid)
        names.append("postgres")
    if redis._process is not None:
        roots.append(redis._process.pid)
        names.append("redis")
    roots.append(lb.pid)
    names.append("nginx")
    models = {"chat": CHAT_MODEL, "embed": EMBED_MODEL}
    t = Target(name, f"http://127.0.0.1:{lb_port}", market["buyer_key"], models, roots, procs)
    t.extra |= {
        "redis_port": redis.port,
        "pg_version": cluster.psql("SHOW server_version").strip(),
        "root_names": names,
        "instance_origins": origins,
    }
    if market["embed_note"]:
        t.notes.append(market["embed_note"])
    return t, owned


def check_chat(origin: str, api_key: str, model: str) -> None:
    """One non-streamed chat request; raises unless it is answered 200."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    req = urllib.request.Request(
        f"{origin}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def instance_trades(origin: str) -> float | None:
    """`dragonfly_trades_total` summed over its labels on one instance (its /metrics answers loopback
    clients when no metrics token is set): how many requests that instance routed. None if unreadable."""
    try:
        with urllib.request.urlopen(f"{origin}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return metric_total(text, "dragonfly_trades_total")


def metric_total(text: str, name: str) -> float:
    """Sum of every sample of `name` in a Prometheus text answer."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


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
