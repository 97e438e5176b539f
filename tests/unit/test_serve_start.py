"""How `dragonfly serve` starts quickly: its subcommands are imported only when they run, and the two
planes start side by side, the gateway's worker waiting for the control plane to listen before it
serves (gateway/proxy.py `wait_for_control_plane`; docs/operator.md `DRAGONFLY_CONTROL_START_WAIT_S`)."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from dragonfly.cli import main
from dragonfly.cli.supervisor import free_port, reserve_port
from dragonfly.demo.seller import DEFAULT_API_KEY, DemoSeller
from dragonfly.gateway.proxy import wait_for_control_plane


def test_serve_does_not_import_the_simulator_or_the_admin_commands() -> None:
    probe = (
        "import sys, dragonfly.cli.serve; "
        "print(sorted(m for m in sys.modules if m.startswith(('dragonfly.simulate', 'dragonfly.cli.admin', "
        "'dragonfly.cli.demo_seed'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_subcommand_is_still_listed_and_runs() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["--help"])
    assert listed.exit_code == 0, listed.output
    for name in ("admin", "migrate", "serve", "simulate"):
        assert f"  {name} " in listed.output
    sub = runner.invoke(main, ["simulate", "--help"])
    assert sub.exit_code == 0, sub.output
    assert runner.invoke(main, ["no-such-command"]).exit_code == 2


async def test_the_worker_waits_until_the_control_plane_listens() -> None:
    port = free_port()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(0.3)
        return await asyncio.start_server(answer, "127.0.0.1", port)

    later = asyncio.create_task(listen_later())
    t0 = time.monotonic()
    assert await wait_for_control_plane(f"http://127.0.0.1:{port}", timeout_s=10) is True
    waited = time.monotonic() - t0
    server = await later
    server.close()
    await server.wait_closed()
    assert 0.25 <= waited < 5  # it waited for the listener, and returned soon after it came


async def test_a_control_plane_that_never_listens_is_given_up_on_after_the_wait() -> None:
    t0 = time.monotonic()
    assert await wait_for_control_plane(f"http://127.0.0.1:{free_port()}", timeout_s=0.3) is False
    assert 0.25 <= time.monotonic() - t0 < 5


def test_a_reserved_port_is_refused_to_others_and_taken_by_a_reuseport_child() -> None:
    """`serve` holds the control plane's port until the control plane listens (`reserve_port`): no other
    bind gets it meanwhile (a second `serve`'s bind(0) is refused the same way), the child binding it with
    SO_REUSEPORT, as Robyn does, gets it and every connection, and keeps it once the reservation closes.
    (That Robyn itself binds a reserved port is shown by every end-to-end test: `serve` reserves it.)"""
    reserved = reserve_port()
    port = reserved.getsockname()[1]
    child = socket.socket()
    child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        with socket.socket() as other, pytest.raises(OSError) as refused:
            other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
        child.bind(("127.0.0.1", port))
        child.listen()
        reserved.close()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                conn, _ = child.accept()
                conn.close()
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    finally:
        reserved.close()
        child.close()


async def test_the_demo_seller_binds_a_port_serve_holds_for_it() -> None:
    """`serve --demo` reserves the demo seller's port the same way (`--reuse-port`): the seller binds it
    while it is held, answers on it, and no other bind gets it meanwhile."""
    with reserve_port() as reserved:
        port = reserved.getsockname()[1]
        seller = DemoSeller(port=port, reuse_port=True)
        await seller.start()
        try:
            assert seller.port == port
            with socket.socket() as other, pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + DEFAULT_API_KEY.encode()
            )
            writer.write(b"\r\nConnection: close\r\n\r\n")
            head = await reader.readline()
            writer.close()
            assert head.startswith(b"HTTP/1.1 200"), head
        finally:
            await seller.stop()
