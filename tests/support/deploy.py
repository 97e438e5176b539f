"""The production shape of deploy/ as local processes: the files read as they ship (compose.yaml for the
commands and environment, nginx.conf for the load balancer), with only what differs between a container
network and loopback replaced (addresses, ports, the metrics directory). No container engine needed.

    nginx (deploy/nginx.conf) -> N gateways (Granian, through deploy/docker-entrypoint.sh) + control plane
                              -> PostgreSQL + Redis (the tests' throwaway ones)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.ports import LOOPBACK, free_port
from support.processes import ManagedProcess, ProcessGroup

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx.conf"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
K8S = DEPLOY / "k8s"

# What the topology gives the compose variables that compose.yaml requires from `.env`.
METRICS_TOKEN = "deploy-test-metrics-token"
_NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def load_compose() -> dict[str, Any]:
    with COMPOSE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)  # anchors and `<<` merge keys resolved, as compose does
    assert isinstance(data, dict)
    return data


# -- compose interpolation ---------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(LookupError):
    pass


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`,
    `$NAME` and `$$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = variables.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(one, value)


def service_env(compose: Mapping[str, Any], service: str, variables: Mapping[str, str]) -> dict[str, str]:
    """A service's `environment`, interpolated, every value a string (as a container sees it)."""
    raw = compose["services"][service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v), variables) for k, v in raw.items()}


def local_argv(
    command: Sequence[str], *, host: str | None = None, port: int | None = None, workers: int | None = None
) -> list[str]:
    """A container command as a local one: the image's programs from this virtualenv, and the values of
    --host / --port / --workers replaced when given (each must be in the command)."""
    programs = {
        "python": [sys.executable],
        "granian": [sys.executable, "-m", "granian"],
        "dragonfly": [sys.executable, "-m", "dragonfly.cli"],
    }
    argv = [*programs.get(command[0], [command[0]]), *command[1:]]
    for flag, value in (("--host", host), ("--port", port), ("--workers", workers)):
        if value is not None:
            i = argv.index(flag)
            argv[i + 1] = str(value)
    return argv


# -- nginx ---------------------------------------------------------------------------------------------


def _replace_once(pattern: str, replacement: str, text: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"deploy/nginx.conf no longer has exactly one match of {pattern!r}"
    return new


def render_nginx(
    conf: str, *, prefix: Path, listen_port: int, gateway_ports: Sequence[int], control_port: int
) -> str:
    """deploy/nginx.conf with loopback addresses: the gateway alias becomes one server line per gateway
    (same parameters), the control plane's name its port, `listen` a loopback port, and nginx's temp
    directories go under `prefix` (the packaged defaults are under /var/lib/nginx)."""

    def servers(match: re.Match[str]) -> str:
        indent, params = match.group(1), match.group(2)
        return "\n".join(f"{indent}server {LOOPBACK}:{p}{params};" for p in gateway_ports)

    new, count = re.subn(r"^(\s*)server dragonfly-gateway:8000([^;]*);$", servers, conf, flags=re.M)
    assert count == 1, "deploy/nginx.conf no longer has one `server dragonfly-gateway:8000` line"
    new = _replace_once(r"server dragonfly-control:8001\b", f"server {LOOPBACK}:{control_port}", new)
    new = _replace_once(r"^(\s*)listen 8080;$", rf"\g<1>listen {LOOPBACK}:{listen_port};", new)
    temp = "".join(f"\n  {name}_temp_path {prefix / name};" for name in _NGINX_TEMP_DIRS)
    return _replace_once(r"^http \{$", "http {" + temp, new)


@dataclass
class NginxPrefix:
    """A directory nginx runs in (`-p`): config, pid, temp dirs. Under /tmp and world-searchable, because
    as root nginx's workers run as `nobody` and must reach the temp dirs."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dragonfly-nginx-", dir="/tmp")))

    def __post_init__(self) -> None:
        os.chmod(self.root, 0o755)

    def write(self, conf: str, name: str = "nginx.conf") -> Path:
        path = self.root / name
        path.write_text(conf, encoding="utf-8")
        os.chmod(path, 0o644)
        return path

    def argv(self, binary: str, conf: Path, *extra: str) -> list[str]:
        return [binary, "-p", str(self.root), "-c", str(conf), "-e", "stderr", *extra]

    def test(self, binary: str, conf: Path) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on `conf`: 0 and 'syntax is ok … test is successful' when nginx accepts it."""
        argv = self.argv(binary, conf, "-t", "-g", f"pid {self.root / 'nginx.pid'};")
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- processes -----------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return out


def kill_tree(proc: ManagedProcess) -> None:
    """SIGKILL a process and everything it started, workers first (a Granian worker whose main process
    goes gets SIGTERM and would drain: a crash must not)."""
    for pid in reversed(descendants(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()


@dataclass
class Gateway:
    origin: str
    process: ManagedProcess
    metrics_dir: Path


@dataclass
class Topology:
    origin: str  # nginx, the public entry point
    gateways: list[Gateway]
    control: str
    nginx: ManagedProcess
    gateway_env: dict[str, str]
    control_env: dict[str, str]


# compose.yaml's values that name the container network, and what they are on loopback. Nothing else
# in the services' environment is changed.
def _local_values(service: str, database_url: str, redis_url: str, control: str) -> dict[str, str]:
    values = {"DRAGONFLY_DATABASE_URL": database_url, "DRAGONFLY_REDIS_URL": redis_url}
    if service == "control":
        # nginx and the gateways connect from 127.0.0.1 here (from the edge network in compose).
        values["DRAGONFLY_CONTROL_TRUSTED_PROXIES"] = LOOPBACK
    if service == "gateway":
        values |= {
            "DRAGONFLY_CONTROL_URL": control,
            # nginx connects to the gateways from 127.0.0.1 here (from its pinned address in compose).
            "DRAGONFLY_TRUSTED_PROXIES": LOOPBACK,
        }
    return values


def compose_variables(secret_key: str) -> dict[str, str]:
    """The variables compose.yaml requires from `.env`."""
    return {
        "POSTGRES_PASSWORD": "unused-on-loopback",
        "DRAGONFLY_SECRET_KEY": secret_key,
        "DRAGONFLY_METRICS_TOKEN": METRICS_TOKEN,
    }


def local_env(
    compose: Mapping[str, Any],
    service: str,
    *,
    secret_key: str,
    database_url: str,
    redis_url: str,
    control: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = service_env(compose, service, compose_variables(secret_key))
    local = _local_values(service, database_url, redis_url, control)
    missing = set(local) - set(env)
    assert not missing, f"compose.yaml's {service} no longer sets {sorted(missing)}"
    return {**env, **local, **(extra or {})}


def run_healthcheck(compose: Mapping[str, Any], service: str, port: int, container_port: int) -> None:
    """Run a service's compose healthcheck (CMD form) against the local process: exit 0 or fail."""
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{service}: healthcheck is not in CMD form"
    argv = [a.replace(f":{container_port}/", f":{port}/") for a in local_argv(test[1:])]
    assert argv != local_argv(test[1:]), f"{service}: healthcheck does not name port {container_port}"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"{service} healthcheck failed: {done.stderr}"


def start_topology(
    processes: ProcessGroup,
    prefix: NginxPrefix,
    *,
    secret_key: str,
    database_url: str,
    redis_url: str,
    work_dir: Path,
    gateways: int = 2,
    extra_env: Mapping[str, str] | None = None,
) -> Topology:
    """Migrate, then the control plane, `gateways` gateways (one Granian worker each) and nginx, each
    with compose.yaml's command and environment. Returns when nginx listens and every compose healthcheck
    passes."""
    binary = nginx_binary()
    assert binary is not None, "nginx not installed (scripts/ensure-system-deps.sh installs it)"
    compose = load_compose()
    services = compose["services"]
    common = {"secret_key": secret_key, "database_url": database_url, "redis_url": redis_url}

    migrate_env = local_env(compose, "migrate", **common, extra=extra_env)
    done = subprocess.run(
        local_argv(services["migrate"]["command"]),
        env={**os.environ, **migrate_env},
        cwd=work_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"migrate failed: {done.stdout}\n{done.stderr}"

    control_port = free_port()
    control_env = local_env(compose, "control", **common, extra=extra_env)
    processes.start(
        local_argv(services["control"]["command"], host=LOOPBACK, port=control_port),
        ready_port=control_port,
        env=control_env,
        cwd=work_dir,
        timeout_s=60,
    )
    control = f"http://{LOOPBACK}:{control_port}"
    run_healthcheck(compose, "control", control_port, 8001)

    started: list[Gateway] = []
    gateway_env: dict[str, str] = {}
    for i in range(gateways):
        port = free_port()
        metrics_dir = work_dir / f"metrics-{i}"  # each container has its own tmpfs
        gateway_env = local_env(
            compose,
            "gateway",
            **common,
            control=control,
            extra={**(extra_env or {}), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        )
        argv = local_argv(services["gateway"]["command"], host=LOOPBACK, port=port, workers=1)
        proc = processes.start(
            ["sh", str(ENTRYPOINT), *argv], ready_port=port, env=gateway_env, cwd=work_dir, timeout_s=60
        )
        run_healthcheck(compose, "gateway", port, 8000)
        started.append(Gateway(f"http://{LOOPBACK}:{port}", proc, metrics_dir))

    listen = free_port()
    for name in _NGINX_TEMP_DIRS:
        (prefix.root / name).mkdir(exist_ok=True)
    conf = prefix.write(
        render_nginx(
            NGINX_CONF.read_text(encoding="utf-8"),
            prefix=prefix.root,
            listen_port=listen,
            gateway_ports=[int(g.origin.rsplit(":", 1)[1]) for g in started],
            control_port=control_port,
        )
    )
    nginx = processes.start(
        prefix.argv(binary, conf, "-g", f"daemon off; pid {prefix.root / 'nginx.pid'};"),
        ready_port=listen,
        cwd=prefix.root,
        timeout_s=30,
    )
    return Topology(f"http://{LOOPBACK}:{listen}", started, control, nginx, gateway_env, control_env)


def dragonfly_cli(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def metric_total(text: str, name: str) -> float:
    """Sum of every sample of `name` in a Prometheus text answer."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def iter_k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            yield path, doc


# -- reading nginx.conf --------------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive | None:
        found = self.all(name)
        assert len(found) <= 1, f"{name} appears {len(found)} times in one block"
        return found[0] if found else None


_TOKEN = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([{};])|([^\s{};'"]+)""")


def parse_nginx(text: str) -> Directive:
    """nginx's configuration syntax as a tree: directives with arguments, blocks with children. The root
    is a pseudo-directive named `main`."""
    text = re.sub(r"(?m)(^|\s)#.*$", r"\1", text)
    root = Directive("main", [], [])
    stack = [root]
    words: list[str] = []
    for match in _TOKEN.finditer(text):
        single, double, punct, bare = match.groups()
        if punct is None:
            words.append(single if single is not None else double if double is not None else bare)
            continue
        if punct == "}":
            assert not words and len(stack) > 1, "unbalanced } in nginx.conf"
            stack.pop()
            continue
        assert words, f"{punct} without a directive in nginx.conf"
        directive = Directive(words[0], words[1:], [] if punct == "{" else None)
        assert stack[-1].block is not None
        stack[-1].block.append(directive)
        if punct == "{":
            stack.append(directive)
        words = []
    assert len(stack) == 1 and not words, "unterminated block or directive in nginx.conf"
    return root


def nginx_size(value: str) -> int:
    """An nginx size (`4m`, `512k`, `1048576`) in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert match, f"not an nginx size: {value}"
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]


def nginx_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match, f"not an nginx time: {value}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]


def compose_seconds(value: str) -> float:
    """A compose duration such as `40s`, `1m30s`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a compose duration: {value}"
    scale = {"us": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


# -- .dockerignore -------------------------------------------------------------------------------------


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignored(path: str, rules: Sequence[str]) -> bool:
    """Whether Docker leaves `path` (relative to the build context) out: the last rule matching the path
    or one of its parent directories decides; `!` rules put back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = _docker_pattern(rule.lstrip("!").strip("/"))
        if any(pattern.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def dockerignore_rules() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
