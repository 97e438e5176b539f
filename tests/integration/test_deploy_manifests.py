"""deploy/ checked offline: compose.yaml against the Compose specification (the JSON schema check-jsonschema
vendors), every Kubernetes manifest against the API's JSON schemas (kubernetes-validate, strict: an
unknown field is an error), `nginx -t` on nginx.conf, and the values that must agree across files (the
body limit, the drain deadline and grace periods, the trusted proxy, the metrics directory, the image's
command and user). tests/e2e/test_deploy_topology.py runs the same files as processes."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata, resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from support.deploy import (
    COMPOSE,
    DEPLOY,
    ENTRYPOINT,
    K8S,
    NGINX_CONF,
    REPO,
    Directive,
    NginxPrefix,
    compose_seconds,
    dockerignore_rules,
    dockerignored,
    iter_k8s_documents,
    load_compose,
    load_yaml_documents,
    nginx_binary,
    nginx_seconds,
    nginx_size,
    parse_nginx,
    render_nginx,
)

from dragonfly.cli.serve import granian_http_args
from dragonfly.config import Settings

# The oldest Kubernetes minor the manifests are checked against, and the newest the package knows.
K8S_VERSIONS = ("1.29", kubernetes_validate.latest_version())
DRAGONFLY_SERVICES = ("migrate", "control", "gateway")


# -- compose -------------------------------------------------------------------------------------------


def _compose_validator() -> jsonschema.protocols.Validator:
    import check_jsonschema.builtin_schemas.vendor as vendored

    schema = json.loads((resources.files(vendored) / "compose-spec.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    validator = _compose_validator()
    compose = load_compose()
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The check has teeth: a misspelt key is refused.
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["enviroment"] = broken["services"]["gateway"].pop("environment")
    assert not validator.is_valid(broken)


def _env(service: str) -> dict[str, str]:
    raw = load_compose()["services"][service].get("environment") or {}
    return {str(k): str(v) for k, v in raw.items()}


def test_compose_wires_the_production_shape() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *DRAGONFLY_SERVICES, "proxy"}
    gateway, proxy = services["gateway"], services["proxy"]
    assert int(gateway["deploy"]["replicas"]) >= 2

    # Every Dragonfly process sees the same database, Redis, secret and economics.
    shared = ["DRAGONFLY_DATABASE_URL", "DRAGONFLY_REDIS_URL", "DRAGONFLY_SECRET_KEY"]
    shared += ["DRAGONFLY_PLATFORM_FEE_BPS", "DRAGONFLY_RESERVE_BPS", "DRAGONFLY_PUBLIC_URL"]
    for name in shared:
        assert len({_env(s)[name] for s in DRAGONFLY_SERVICES}) == 1, name

    # nginx is pinned on the edge network, outside the dynamic range, and is the gateways' only trusted proxy.
    edge = compose["networks"]["edge"]["ipam"]["config"][0]
    pinned = ipaddress.ip_address(proxy["networks"]["edge"]["ipv4_address"])
    assert pinned in ipaddress.ip_network(edge["subnet"])
    assert pinned not in ipaddress.ip_network(edge["ip_range"])
    assert _env("gateway")["DRAGONFLY_TRUSTED_PROXIES"] == str(pinned)
    # The names nginx.conf uses are the gateways' and the control plane's aliases on that network.
    assert gateway["networks"]["edge"]["aliases"] == ["dragonfly-gateway"]
    assert services["control"]["networks"]["edge"]["aliases"] == ["dragonfly-control"]
    assert urlsplit(_env("gateway")["DRAGONFLY_CONTROL_URL"]).netloc == "dragonfly-control:8001"
    assert proxy["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert proxy["ports"] == ["8000:8080"]

    # The stores have no way out and no published port.
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name]
    assert "noeviction" in services["redis"]["command"]

    # Start order waits for health, and every condition names a service that can meet it.
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
            else:
                assert cond["condition"] == "service_completed_successfully" and dep == "migrate"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["dragonfly", "migrate"]

    # Metrics: a fresh tmpfs per container, a token for scraping from outside.
    env = _env("gateway")
    assert env["PROMETHEUS_MULTIPROC_DIR"] in gateway["tmpfs"]
    assert env["DRAGONFLY_METRICS_TOKEN"].startswith("${DRAGONFLY_METRICS_TOKEN:?")

    # Stopping: the gateway drains within Docker's grace period; nginx gives streams longer than the drain
    # and gets longer than that itself.
    drain = float(env["DRAGONFLY_DRAIN_TIMEOUT_S"])
    nginx_quit = nginx_seconds(_nginx().one("worker_shutdown_timeout").args[0])  # type: ignore[union-attr]
    assert _accepts_past_the_inflight_limit(gateway["command"], env)
    assert _http_as_serve(gateway["command"])  # k8s and the image run the same command
    kill = _kill_timeout(gateway["command"])
    assert drain < kill < compose_seconds(gateway["stop_grace_period"])
    assert drain < nginx_quit < compose_seconds(proxy["stop_grace_period"])


def test_compose_variables_are_the_ones_env_example_lists() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text(encoding="utf-8")))
    assert required == {"POSTGRES_PASSWORD", "DRAGONFLY_SECRET_KEY", "DRAGONFLY_METRICS_TOKEN"}
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"(?m)^([A-Z_]+)=", example))
    assert required <= listed
    assert not re.search(r"(?m)^[A-Z_]+=\S", example), ".env.example must not carry a value"


# -- Kubernetes ----------------------------------------------------------------------------------------


def test_kubernetes_manifests_follow_the_api_schemas() -> None:
    docs = list(iter_k8s_documents())
    assert len(docs) >= 8
    for path, doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path)
                pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} ({version}) {where}: {exc}")
    # The check has teeth: an unknown field (a misspelt one) is refused.
    deployment = next(doc for _, doc in docs if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpget"] = {"path": "/"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def _k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in iter_k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _pre_stop_s(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return float(command[1])


def _kill_timeout(argv: list[str]) -> float:
    """Granian's backstop for a worker that does not stop (above the drain deadline)."""
    return float(argv[argv.index("--workers-kill-timeout") + 1])


def _accepts_past_the_inflight_limit(argv: list[str], env: dict[str, str]) -> bool:
    """Granian's --backpressure (open connections per worker) at least twice the gateway's in-flight
    limit, as `dragonfly serve` sets it: past the limit a request is answered 503, not left unaccepted."""
    limit = int(env.get("DRAGONFLY_MAX_INFLIGHT", Settings().max_inflight))
    return int(argv[argv.index("--backpressure") + 1]) >= 2 * limit


def _http_as_serve(argv: list[str]) -> bool:
    """The HTTP flags `dragonfly serve` passes with the default settings: HTTP/1 only, the header-read
    deadline (also the idle keep-alive limit) and the buffer that bounds request heads."""
    flags = granian_http_args(Settings())
    return all(argv[argv.index(f) + 1] == v for f, v in zip(flags[::2], flags[1::2], strict=True))


def _workers_apart(argv: list[str]) -> list[str]:
    out = list(argv)
    out[out.index("--workers") + 1] = "N"
    return out


def test_kubernetes_manifests_wire_the_production_shape() -> None:
    gateway = _k8s("Deployment", "dragonfly-gateway")
    control = _k8s("Deployment", "dragonfly-control")
    pod = gateway["spec"]["template"]["spec"]
    app, proxy = _container(gateway, "gateway"), _container(gateway, "proxy")
    env = _container_env(app)

    # Probes on /healthz, on the gateway itself and through the sidecar.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["path"] == "/healthz", probe
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/healthz"

    # Client addresses: the sidecar is the trusted proxy, and nginx.conf's gateway name is the sidecar's
    # neighbour in this pod.
    assert env["DRAGONFLY_TRUSTED_PROXIES"] == "127.0.0.1"
    assert pod["hostAliases"] == [{"ip": "127.0.0.1", "hostnames": ["dragonfly-gateway"]}]
    public = _k8s("Service", "dragonfly")
    assert public["spec"]["type"] == "LoadBalancer" and public["spec"]["externalTrafficPolicy"] == "Local"
    listen = _nginx_server().one("listen").args[0]  # type: ignore[union-attr]
    assert {"name": "proxy", "containerPort": int(listen)} in proxy["ports"]
    mount = next(m for m in proxy["volumeMounts"] if m["mountPath"] == "/etc/nginx/nginx.conf")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "dragonfly-nginx" and mount["subPath"] == "nginx.conf"

    # The control plane: the Service the gateways and nginx name.
    control_service = _k8s("Service", "dragonfly-control")
    assert urlsplit(env["DRAGONFLY_CONTROL_URL"]).netloc == "dragonfly-control:8001"
    assert control_service["spec"]["ports"][0]["port"] == 8001
    assert _container(control, "control")["args"] == load_compose()["services"]["control"]["command"]

    # Metrics: the multiprocess directory is an emptyDir mounted there.
    metrics_mount = next(m for m in app["volumeMounts"] if m["mountPath"] == env["PROMETHEUS_MULTIPROC_DIR"])
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == metrics_mount["name"])

    # Stopping: preStop, then the longer of the drain and nginx's graceful quit, within the grace period.
    drain = float(env["DRAGONFLY_DRAIN_TIMEOUT_S"])
    nginx_quit = nginx_seconds(_nginx().one("worker_shutdown_timeout").args[0])  # type: ignore[union-attr]
    assert drain < nginx_quit and drain < _kill_timeout(app["args"])
    assert _accepts_past_the_inflight_limit(app["args"], env)
    assert _pre_stop_s(app) + _kill_timeout(app["args"]) < pod["terminationGracePeriodSeconds"]
    assert pod["terminationGracePeriodSeconds"] > max(
        _pre_stop_s(app) + drain, _pre_stop_s(proxy) + nginx_quit
    )

    # The same command as compose (worker count aside) and as the image's default.
    compose_gateway = load_compose()["services"]["gateway"]["command"]
    assert _workers_apart(app["args"]) == _workers_apart(compose_gateway)
    assert app["args"] == _dockerfile_exec("CMD")

    # Scaling: the HPA owns the count and measures CPU against every container's request.
    hpa = _k8s("HorizontalPodAutoscaler", "dragonfly-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dragonfly-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2 and "replicas" not in gateway["spec"]
    for deployment in (gateway, control):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in container["resources"]["requests"], container["name"]

    # Selectors: every Service, PDB and Deployment selects its own pods, and Services reach named ports.
    for deployment in (gateway, control):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pods = {d["metadata"]["name"]: d for d in (gateway, control)}
    for service, target in ((public, "dragonfly-gateway"), (control_service, "dragonfly-control")):
        labels = pods[target]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {
            p["name"] for c in pods[target]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for name in ("dragonfly-gateway", "dragonfly-control"):
        pdb = _k8s("PodDisruptionBudget", name)
        assert (
            pdb["spec"]["selector"]["matchLabels"].items()
            <= pods[name]["spec"]["template"]["metadata"]["labels"].items()
        )

    # Configuration: the ConfigMap exists, and the Secret example names every secret the processes read.
    secret = _k8s("Secret", "dragonfly-secrets")
    wanted = {
        "DRAGONFLY_SECRET_KEY",
        "DRAGONFLY_DATABASE_URL",
        "DRAGONFLY_REDIS_URL",
        "DRAGONFLY_METRICS_TOKEN",
    }
    assert wanted <= set(secret["stringData"])
    _k8s("ConfigMap", "dragonfly-config")
    for deployment in (gateway, control):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in ("dragonfly-config", "dragonfly-secrets")
            if container["image"] == "dragonfly":
                assert container["securityContext"]["runAsUser"] == _dockerfile_uid()
                assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_kustomization_takes_every_manifest_but_the_secret_example() -> None:
    kustomization = load_yaml_documents(DEPLOY / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    on_disk = {f"k8s/{p.name}" for p in K8S.glob("*.yaml")}
    assert listed == on_disk - {"k8s/secret.example.yaml"}
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert generated["dragonfly-nginx"]["files"] == ["nginx.conf"]


# -- nginx ---------------------------------------------------------------------------------------------


def _nginx() -> Directive:
    return parse_nginx(NGINX_CONF.read_text(encoding="utf-8"))


def _nginx_server() -> Directive:
    http = _nginx().one("http")
    assert http is not None
    servers = http.all("server")
    assert len(servers) == 1
    return servers[0]


def _effective(name: str, *blocks: Directive) -> list[str] | None:
    """A directive's arguments as nginx applies them in the innermost block (inherited outward in)."""
    for block in reversed(blocks):
        found = block.one(name)
        if found is not None:
            return found.args
    return None


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/ensure-system-deps.sh installs it)")
    prefix = NginxPrefix()
    try:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix.root / name).mkdir()
        rendered = render_nginx(
            NGINX_CONF.read_text(encoding="utf-8"),
            prefix=prefix.root,
            listen_port=18080,
            gateway_ports=[18000, 18001],
            control_port=18002,
        )
        checked = prefix.test(binary, prefix.write(rendered))
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr
        # The check has teeth: nginx refuses a directive it does not know.
        broken = prefix.test(
            binary, prefix.write(rendered.replace("proxy_buffering off;", "proxy_bufering off;"))
        )
        assert broken.returncode != 0 and "proxy_bufering" in broken.stderr
    finally:
        prefix.remove()


def test_nginx_settings_agree_with_the_gateway() -> None:
    main = _nginx()
    http = main.one("http")
    server = _nginx_server()
    assert http is not None
    upstreams = {u.args[0]: u for u in http.all("upstream")}
    assert [s.args[0] for s in upstreams["gateway"].all("server")] == ["dragonfly-gateway:8000"]
    assert [s.args[0] for s in upstreams["control"].all("server")] == ["dragonfly-control:8001"]

    # The body limit is the gateway's, in both deployments, and so is the error nginx answers past it.
    limit = nginx_size(server.one("client_max_body_size").args[0])  # type: ignore[union-attr]
    gateway_k8s = _container_env(_container(_k8s("Deployment", "dragonfly-gateway"), "gateway"))
    assert (
        limit
        == int(_env("gateway")["DRAGONFLY_MAX_BODY_BYTES"])
        == int(gateway_k8s["DRAGONFLY_MAX_BODY_BYTES"])
    )
    error_pages = {d.args[0]: d.args[1:] for d in server.all("error_page")}
    assert error_pages["413"] == ["=", "@request_too_large"]
    named = next(loc for loc in server.all("location") if loc.args == ["@request_too_large"])
    status, body = named.one("return").args  # type: ignore[union-attr]
    error = json.loads(body)["error"]
    assert status == "413" and error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error" and f"larger than {limit} bytes" in error["message"]

    # Every proxied location: HTTP/1.1 keep-alive, no buffering of answers (SSE), X-Forwarded-For replaced
    # (never appended: the gateway takes its first address), no retry of a request a gateway received.
    proxied = [loc for loc in server.all("location") if loc.one("proxy_pass") is not None]
    assert {loc.one("proxy_pass").args[0] for loc in proxied} == {"http://gateway", "http://control"}  # type: ignore[union-attr]
    for loc in proxied:
        scope = (http, server, loc)
        assert _effective("proxy_http_version", *scope) == ["1.1"]
        assert _effective("proxy_buffering", *scope) == ["off"]
        next_upstream = _effective("proxy_next_upstream", *scope) or []
        assert "non_idempotent" not in next_upstream
        headers = {d.args[0].lower(): d.args[1] for b in scope for d in b.all("proxy_set_header")}
        assert headers["x-forwarded-for"] == "$remote_addr" and headers["connection"] == ""
        # Longer than the gateway's whole-request deadline to a seller (a non-streamed answer is silent
        # until complete) and than its silence limit inside a stream.
        read = nginx_seconds((_effective("proxy_read_timeout", *scope) or ["60s"])[0])
        assert read > 600 > 60
    # /metrics is per instance: not through the balancer.
    metrics = next(loc for loc in server.all("location") if loc.args == ["=", "/metrics"])
    assert metrics.one("return").args == ["404"]  # type: ignore[union-attr]
    # Idle upstream connections close before the gateway's own idle limit (its header-read timeout).
    command = load_compose()["services"]["gateway"]["command"]
    idle_s = int(command[command.index("--http1-header-read-timeout") + 1]) / 1000
    assert nginx_seconds(upstreams["gateway"].one("keepalive_timeout").args[0]) < idle_s  # type: ignore[union-attr]
    # Towards clients: the gateway's deadlines, and a cap per client address (which the gateway cannot
    # count behind nginx) answered with an OpenAI-shaped 429.
    assert nginx_seconds(http.one("client_header_timeout").args[0]) == idle_s  # type: ignore[union-attr]
    assert nginx_seconds(http.one("client_body_timeout").args[0]) == Settings().http_body_timeout_s  # type: ignore[union-attr]
    assert nginx_seconds(http.one("keepalive_timeout").args[0]) <= idle_s  # type: ignore[union-attr]
    zone = http.one("limit_conn_zone").args  # type: ignore[union-attr]
    assert zone[0] == "$binary_remote_addr"
    assert server.one("limit_conn").args[0] == zone[1].removeprefix("zone=").split(":")[0]  # type: ignore[union-attr]
    assert http.one("limit_conn_status").args == ["429"]  # type: ignore[union-attr]
    assert error_pages["429"] == ["=", "@too_many_connections"]
    too_many = next(loc for loc in server.all("location") if loc.args == ["@too_many_connections"])
    status, body = too_many.one("return").args  # type: ignore[union-attr]
    assert status == "429" and json.loads(body)["error"]["code"] == "rate_limited"
    # Paths the control plane owns go to it, as the gateway's own pass-through list says.
    control_paths = {loc.args[-1] for loc in proxied if loc.one("proxy_pass").args[0] == "http://control"}  # type: ignore[union-attr]
    from dragonfly.gateway.app import _control_owned

    for path in control_paths:  # ones the gateway would also pass on (everything outside /v1/ is)
        assert _control_owned(path) or not path.startswith("/v1/"), path
    control = [loc.args for loc in proxied if loc.one("proxy_pass").args[0] == "http://control"]  # type: ignore[union-attr]
    exact = {args[-1] for args in control if args[0] == "="}
    prefixes = {args[-1] for args in control if len(args) == 1}
    paths = ("/api/keys", "/v1/pool/keys", "/v1/market/listings", "/v1/pool", "/v1/market", "/verify")

    def to_control(path: str) -> bool:
        return path in exact or any(path.startswith(p) for p in prefixes)

    for path in (*paths, "/", "/dashboard/js/app.js"):  # the dashboard's page and files, too
        assert to_control(path), path
    assert not to_control("/v1/chat/completions") and not to_control("/healthz")


# -- the image -----------------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, rest) per instruction, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^\s*#.*\n", "", text)
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_exec(instruction: str) -> list[str]:
    """The last CMD / ENTRYPOINT, in exec (JSON) form."""
    value = [rest for word, rest in _dockerfile() if word == instruction][-1]
    parsed = json.loads(value)
    assert isinstance(parsed, list)
    return parsed


def _dockerfile_uid() -> int:
    user = [rest for word, rest in _dockerfile() if word == "USER"][-1]
    return int(user.split(":")[0])


def test_image_installs_python_packages_only_from_the_lock() -> None:
    runs = [rest for word, rest in _dockerfile() if word == "RUN"]
    installs = [
        shlex.split(part.strip())
        for run in runs
        for part in run.split("&&")
        if re.search(r"\buv pip install\b|\bpip install\b", part)
    ]
    assert installs
    for argv in installs:
        if "--no-deps" in argv and any(a.endswith(".whl") for a in argv):
            continue  # Dragonfly's own wheel, built in the step before; its dependencies are installed
        assert "--require-hashes" in argv, argv
        if Path(argv[0]).name == "uv":
            assert argv[argv.index("-c") + 1] == "requirements.lock.txt", argv

    # What lock_pins.py hands to those installs: every runtime dependency, pinned where pyproject allows.
    pinned = subprocess.run(
        [sys.executable, str(DEPLOY / "lock_pins.py"), "runtime"], capture_output=True, text=True, check=True
    ).stdout.split()
    pins = dict(line.split("==") for line in pinned)
    lock = (REPO / "requirements.lock.txt").read_text(encoding="utf-8")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for dep in pyproject["project"]["dependencies"]:
        req = Requirement(dep)
        version = pins[re.sub(r"[-_.]+", "-", req.name).lower()]
        assert SpecifierSet(str(req.specifier)).contains(version), (dep, version)

    # Everything those packages pull in on Linux / CPython 3.11 is in the lock too, so --require-hashes with
    # the lock as constraints finds a hash for each (read from this virtualenv, installed from the lock).
    locked = {
        re.sub(r"[-_.]+", "-", m).lower() for m in re.findall(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock)
    }
    todo, seen = list(pins), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in locked, f"{name} (needed at run time) is not in requirements.lock.txt"
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(re.sub(r"[-_.]+", "-", req.name).lower())
    assert len(seen) > len(pins)


def test_build_context_has_what_the_image_copies_and_nothing_else() -> None:
    rules = dockerignore_rules()
    copied = []
    for word, rest in _dockerfile():
        if word == "COPY" and "--from=" not in rest:
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            copied += args[:-1]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        files = (
            [p for p in (REPO / source).rglob("*") if p.is_file()]
            if (REPO / source).is_dir()
            else [REPO / source]
        )
        kept = [f for f in files if not dockerignored(str(f.relative_to(REPO)), rules)]
        assert kept, f"{source} is copied by the Dockerfile but left out of the build context"
    for path in ("rust_core/src/lib.rs", "rust_core/benches/rank.rs", "python/dragonfly/config.py"):
        assert not dockerignored(path, rules), path
    for path in (
        ".git/config",
        ".venv/bin/python",
        "target/release/libdragonfly_core.so",
        "python/dragonfly/_native.abi3.so",
        "python/dragonfly/__pycache__/config.cpython-311.pyc",
        "tests/conftest.py",
        "deploy/.env",
        "var/dragonfly.db",
    ):
        assert dockerignored(path, rules), path


def test_entrypoint_empties_the_metrics_directory_and_becomes_the_command(tmp_path: Path) -> None:
    stale = tmp_path / "metrics"
    (stale / "sub").mkdir(parents=True)
    for name in ("counter_123.db", "gauge_livesum_123.db", "sub/x"):
        (stale / name).write_text("stale")
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'echo "$$"; ls -A "$PROMETHEUS_MULTIPROC_DIR"'],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(stale)},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out.split() == [str(proc.pid)]  # exec'd (same process), and the directory is empty
    # A directory that does not exist yet is made; without the variable the command just runs.
    fresh = tmp_path / "new" / "metrics"
    ran = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(fresh)},
        check=False,
    )
    assert ran.returncode == 0 and fresh.is_dir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    assert subprocess.run(["sh", str(ENTRYPOINT), "true"], env=env, check=False).returncode == 0
    assert _dockerfile_exec("ENTRYPOINT") == ["docker-entrypoint.sh"]
