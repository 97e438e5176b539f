"""DNS rebinding against the data plane's seller client (gateway/upstream.py), in process, with the tests'
fake DNS (support/fake_dns.py) in front of `socket.getaddrinfo`: a seller name that answers a public
address first and 127.0.0.1 next must never bring a request to a real HTTP server on loopback.

The client must connect to the very address it checked. A client that checked one lookup and connected
by name (a second lookup) would get 127.0.0.1 for the connection: the loopback server would see it. A
test must not connect to a public address (and cannot, everywhere), so the loop's `create_connection` is
wrapped: the public address is refused at once, as an unreachable seller would be, everything else is
connected for real, and every host asked for is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_dns import FakeDns, install

from dragonfly.config import Settings
from dragonfly.gateway.upstream import UpstreamClient, UpstreamConnectError

PUBLIC = "93.184.215.14"
NAME = "seller.rebind.test"


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[FakeDns]:
    fake = FakeDns(tmp_path / "dns.json")
    uninstall = install(fake.path)
    try:
        yield fake
    finally:
        uninstall()


@pytest.fixture
async def victim() -> AsyncIterator[list[bytes]]:
    """A real HTTP server on loopback that records what reaches it (it must stay empty)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    seen.append(str(server.sockets[0].getsockname()[1]).encode())  # seen[0]: the port
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


async def test_the_seller_client_connects_only_to_the_address_it_checked(
    dns: FakeDns, victim: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(victim.pop(0))
    dns.answer(NAME, PUBLIC, "127.0.0.1")
    loop = asyncio.get_running_loop()
    real_create_connection = loop.create_connection
    asked: list[Any] = []

    async def create_connection(factory: Any, host: Any = None, port: Any = None, **kw: Any) -> Any:
        asked.append(host)
        if host == PUBLIC:
            raise ConnectionRefusedError("a public address: not from a test")
        return await real_create_connection(factory, host=host, port=port, **kw)

    monkeypatch.setattr(loop, "create_connection", create_connection)
    settings = Settings(allow_private_upstreams=False, upstream_connect_timeout_s=2.0)
    url = f"http://{NAME}:{port}/v1/chat/completions"

    # The first lookup answers the public address: that address is what the client connects to.
    first = UpstreamClient(settings)
    await first.start()
    try:
        with pytest.raises(UpstreamConnectError):
            await first.post(url, "sk-seller", b"{}", accept_sse=False)
    finally:
        await first.close()
    # A later connection (another worker, or past the DNS cache) looks up again: loopback now, refused
    # before any connection is made.
    later = UpstreamClient(settings)
    await later.start()
    try:
        with pytest.raises(UpstreamConnectError, match="forbidden"):
            await later.post(url, "sk-seller", b"{}", accept_sse=False)
    finally:
        await later.close()

    assert victim == [], "the loopback server received a request"
    assert asked == [PUBLIC]
    assert [address for address, _ in dns.lookups(NAME)] == [PUBLIC, "127.0.0.1"]
