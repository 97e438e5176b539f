"""`dragonfly serve`: the whole product on one machine behind one public port.

Processes: the control plane (Robyn) on an internal loopback port, the data plane (Granian, RSGI) on the
public port forwarding every path it does not own to the control plane, and with `--demo` a local demo
seller (a real OpenAI-compatible server on loopback) with a listing for `demo/echo-1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from dragonfly.cli.supervisor import Supervisor, python_module, reserve_port
from dragonfly.config import Settings
from dragonfly.lifetime import port_taken
from dragonfly.storage.sql import open_database

# The gateway drains for `drain_timeout_s`, then ends what is left and exits within ~2 s
# (gateway/drain.py). Backstops: Granian kills a worker still running this much later, and `serve`
# kills the gateway's whole process group later still.
WORKER_KILL_MARGIN_S = 3
GATEWAY_KILL_MARGIN_S = 5.0
# How long a plane may take from its start until it listens.
CHILD_START_S = 60
# A deep accept queue: thousands of concurrent streams must not wait to be accepted.
BACKLOG = 4096
# Granian holds a permit per open connection (idle keep-alive ones too) and stops accepting at its
# `--backpressure` (default: backlog / workers); kept well above the in-flight limit, so that past the
# limit a request is accepted and answered 503 by the gateway instead of waiting in the accept queue.
CONNECTIONS_PER_INFLIGHT = 2
# Granian's HTTP/1 read buffer (its --http1-buffer-size; hyper's default is ~400 KiB). It also bounds the
# request head: past ~40-60 KiB of request line and headers the answer is 431 before the app sees it.
# Bodies are read in pieces of it and are not limited by it.
HTTP1_BUFFER_BYTES = 32 * 1024


def granian_backpressure(settings: Settings) -> int:
    if settings.max_connections:
        return settings.max_connections
    return max(BACKLOG // max(1, settings.workers), settings.max_inflight * CONNECTIONS_PER_INFLIGHT)


def granian_http_args(settings: Settings) -> list[str]:
    """How the data plane's HTTP server treats clients (README.md, Security). HTTP/1 only: with `auto`,
    Granian waits for a connection's first bytes to pick a protocol with no deadline, so a client that
    connects and sends nothing held its connection (and a --backpressure permit) for ever; with `1` the
    header-read deadline runs from the moment the connection opens."""
    return [
        "--http",
        "1",
        "--http1-header-read-timeout",
        str(max(1, round(settings.http_header_timeout_s * 1000))),
        "--http1-buffer-size",
        str(HTTP1_BUFFER_BYTES),
    ]


def gateway_command(settings: Settings) -> list[str]:
    """The data plane as `serve` runs it: Granian with this product's limits (tests start it the same way)."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "rsgi",
        "--factory",
        "--no-ws",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
        "--backlog",
        str(BACKLOG),
        "--backpressure",
        str(granian_backpressure(settings)),
        *granian_http_args(settings),
        "--workers-kill-timeout",
        str(min(1800, math.ceil(settings.drain_timeout_s) + WORKER_KILL_MARGIN_S)),
        "--log-level",
        "warning",
        "--no-access-log",
        "dragonfly.gateway.app:create_app",
    ]


def _child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DRAGONFLY_DATA_DIR": settings.data_dir,
            "DRAGONFLY_DATABASE_URL": settings.database_url,
            "DRAGONFLY_MAIL_BACKEND": settings.mail_backend,
            "DRAGONFLY_MAIL_DIR": settings.mail_dir,
            "DRAGONFLY_SECRET_KEY": settings.secret_key,
            "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1" if settings.allow_private_upstreams else "0",
            "DRAGONFLY_LOG_LEVEL": settings.log_level,
            "DRAGONFLY_LOG_FORMAT": settings.log_format,
            # The control plane's own port is internal: links it mails must name the public address.
            "DRAGONFLY_PUBLIC_URL": settings.public_url,
        }
    )
    if settings.metrics_dir:
        # prometheus_client's multiprocess mode: every Granian worker writes its values here.
        env["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_dir
    if settings.redis_url:
        env["DRAGONFLY_REDIS_URL"] = settings.redis_url
    if settings.smtp_url:
        env["DRAGONFLY_SMTP_URL"] = settings.smtp_url
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_metrics_dir(data_dir: str) -> Path:
    """This run's empty metrics directory, `<data dir>/metrics/run-<pid>`; directories left by earlier
    runs whose `serve` is gone are removed (their workers' values would be counted again)."""
    root = Path(data_dir) / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another `serve` on this data directory
        shutil.rmtree(old, ignore_errors=True)
    run = root / f"run-{os.getpid()}"
    run.mkdir()
    return run


async def _migrate(settings: Settings) -> None:
    db = await open_database(settings.database_url)
    await db.close()


@click.command()
@click.option("--host", default=None, help="Public address (DRAGONFLY_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Public port (DRAGONFLY_PORT, default 8000).")
@click.option(
    "--public-url",
    default=None,
    help="Where people reach this server, for links in mail (DRAGONFLY_PUBLIC_URL, default http://host:port).",
)
@click.option("--database-url", default=None, help="sqlite:///path.db (default) or postgresql://…")
@click.option("--redis-url", default=None, help="redis://… (production state store).")
@click.option("--mail-backend", type=click.Choice(["log", "file", "smtp"]), default=None)
@click.option("--data-dir", default=None, help="Where the embedded database, secret and mail live.")
@click.option(
    "--workers", type=int, default=None, help="Data-plane worker processes (more than 1 needs Redis)."
)
@click.option(
    "--allow-private-upstreams/--no-allow-private-upstreams",
    default=None,
    help="Let seller base URLs reach loopback/private addresses (local demos and tests only).",
)
@click.option("--demo/--no-demo", default=None, help="Start a local demo seller and print a demo buyer key.")
def serve(
    host: str | None,
    port: int | None,
    public_url: str | None,
    database_url: str | None,
    redis_url: str | None,
    mail_backend: str | None,
    data_dir: str | None,
    workers: int | None,
    allow_private_upstreams: bool | None,
    demo: bool | None,
) -> None:
    """Run the gateway (data plane) and the control plane behind one public port."""
    settings = Settings.from_env(
        host=host,
        port=port,
        public_url=public_url,
        database_url=database_url,
        redis_url=redis_url,
        mail_backend=mail_backend,
        data_dir=data_dir,
        workers=workers,
        allow_private_upstreams=allow_private_upstreams,
        demo=demo,
    )
    if settings.demo and not settings.allow_private_upstreams:
        # The demo seller listens on loopback; the operator asked for the demo, so allow it explicitly.
        settings = dataclasses.replace(settings, allow_private_upstreams=True)
    if settings.workers > 1 and not settings.redis_url:
        raise click.UsageError("--workers > 1 needs a shared state store: set --redis-url")
    if port_taken(settings.host, settings.port):
        # Else the gateway would fail to bind while `serve` found "something" listening and said it served.
        raise click.UsageError(f"{settings.host}:{settings.port} is already in use; pick another --port")
    asyncio.run(_migrate(settings))
    metrics_dir = fresh_metrics_dir(settings.data_dir)
    settings = dataclasses.replace(settings, metrics_dir=str(metrics_dir))

    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    sup = Supervisor()
    failed = None
    # The control plane's port stays reserved until it listens there (supervisor.reserve_port).
    reserved = None if settings.control_port else reserve_port()
    try:
        control_port = int(reserved.getsockname()[1]) if reserved is not None else settings.control_port
        seller_url = None
        if settings.demo:
            # The demo seller's port likewise, until it listens (`sup.start` waits for that).
            with reserve_port() as seller_reserved:
                seller_port = int(seller_reserved.getsockname()[1])
                sup.start(
                    "demo-seller",
                    python_module(
                        "dragonfly.demo.seller",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(seller_port),
                        "--reuse-port",
                    ),
                    _child_env(settings),
                    "127.0.0.1",
                    seller_port,
                )
            seller_url = f"http://127.0.0.1:{seller_port}/v1"
        demo_key = None
        if seller_url is not None:
            # Into the database before either plane reads it: the gateway's first snapshot has the
            # demo listing, so the Quick Start request works as soon as the banner is printed.
            from dragonfly.cli.demo_seed import seed_demo  # only with --demo: it imports the services

            demo_key = asyncio.run(seed_demo(settings, seller_url))
        # The two planes start side by side (each spends ~0.5-1 s importing and loading; one after the
        # other that was most of `serve`'s start). The gateway's worker waits for the control plane to
        # listen before it takes its first request (DRAGONFLY_CONTROL_START_WAIT_S), so nothing is
        # forwarded to a control plane that is not there yet.
        control = sup.start(
            "control-plane",
            python_module("dragonfly.api", "--host", "127.0.0.1", "--port", str(control_port)),
            _child_env(settings),
            "127.0.0.1",
            control_port,
            timeout_s=CHILD_START_S,
            wait=False,
        )
        gateway = sup.start(
            "gateway",
            gateway_command(settings),
            _child_env(
                settings,
                DRAGONFLY_CONTROL_URL=f"http://127.0.0.1:{control_port}",
                DRAGONFLY_CONTROL_START_WAIT_S=str(CHILD_START_S),
            ),
            settings.host,
            settings.port,
            timeout_s=CHILD_START_S,
            grace_s=settings.drain_timeout_s + GATEWAY_KILL_MARGIN_S,
            wait=False,
        )
        control.wait_ready()
        if reserved is not None:
            reserved.close()
        gateway.wait_ready()
        base = f"http://{settings.host}:{settings.port}/v1"
        click.echo(f"Dragonfly is serving on {base}  (database: {settings.database_url.split('://')[0]})")
        click.echo(f"Dashboard: http://{settings.host}:{settings.port}/", nl=False)
        if settings.mail_backend == "log":
            click.echo("  (sign up there; the verification link is printed below)")
        else:
            click.echo()
        if demo_key:
            click.echo(f"Demo buyer key: {demo_key}")
            click.echo(f'Try: OpenAI(base_url="{base}", api_key="<the key above>") with model="demo/echo-1"')
        sys.stdout.flush()
        while not stopping:
            failed = sup.any_exited()
            if failed is not None:
                click.echo(f"{failed.name} exited with status {failed.proc.returncode}; stopping", err=True)
                break
            time.sleep(0.2)
    finally:
        if reserved is not None:
            reserved.close()
        sup.stop_all()
        with contextlib.suppress(OSError):
            shutil.rmtree(metrics_dir)
    click.echo("stopped")
    if failed is not None:
        sys.exit(1)  # a child died on its own: not a clean stop
