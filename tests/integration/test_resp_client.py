"""The state store's Redis client (storage.state.resp) against the real throwaway Redis server, and against
scripted TCP servers on loopback for what a healthy Redis never does (silence, a dropped connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from dragonfly.storage.state.resp import RespClient, RespError, RespUnavailable, Script, encode

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(fresh_redis_url: str) -> AsyncIterator[RespClient]:
    c = RespClient(fresh_redis_url)
    yield c
    await c.close()


async def test_commands_and_reply_types(client: RespClient) -> None:
    assert await client.execute("SET", "k", "v") == b"OK"
    assert await client.execute("GET", "k") == b"v"
    assert await client.execute("GET", "missing") is None
    assert await client.execute("INCRBY", "n", 41) == 41
    assert await client.execute("HSET", "h", "a", "1", "b", b"\xff\r\n") == 2
    assert await client.execute("HMGET", "h", "a", "b", "c") == [b"1", b"\xff\r\n", None]
    with pytest.raises(RespError, match="WRONGTYPE"):
        await client.execute("INCR", "h")


async def test_concurrent_callers_share_one_connection_and_get_their_own_replies(client: RespClient) -> None:
    async def one(i: int) -> bytes:
        await client.execute("SET", f"key{i}", f"value{i}")
        return await client.execute("GET", f"key{i}")

    got = await asyncio.gather(*(one(i) for i in range(300)))
    assert got == [f"value{i}".encode() for i in range(300)]
    clients = await client.execute("CLIENT", "LIST")
    assert clients.count(b"\n") == 1  # this test's client is the only one connected


async def test_pipeline_keeps_order_and_returns_error_replies_in_place(client: RespClient) -> None:
    out = await client.execute_many([["SET", "a", "1"], ["INCR", "a"], ["HGET", "a", "x"], ["GET", "a"]])
    assert out[:2] == [b"OK", 2]
    assert isinstance(out[2], RespError)
    assert out[3] == b"2"


async def test_script_falls_back_to_eval_after_a_script_flush(client: RespClient) -> None:
    script = Script(client, "return {tonumber(ARGV[1]) + 1, KEYS[1]}")
    assert await script(["k1"], [41]) == [42, b"k1"]
    await client.execute("SCRIPT", "FLUSH")
    assert await script(["k2"], [1]) == [2, b"k2"]  # NOSCRIPT, then EVAL
    await client.execute("SCRIPT", "FLUSH")
    assert await script.many([(["a"], [1]), (["b"], [2])]) == [[2, b"a"], [3, b"b"]]


async def test_db_number_in_the_url_is_selected(fresh_redis_url: str) -> None:
    parts = urlsplit(fresh_redis_url)
    c2 = RespClient(f"redis://{parts.netloc}/2")
    c0 = RespClient(fresh_redis_url)
    try:
        await c2.execute("SET", "only-in-2", "x")
        assert await c0.execute("GET", "only-in-2") is None
        assert await c2.execute("GET", "only-in-2") == b"x"
    finally:
        await c2.close()
        await c0.close()


async def _scripted(handler) -> tuple[asyncio.Server, int]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_auth_is_sent_before_any_command() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            seen.append(data)
            writer.write(b"+OK\r\n" * data.count(b"*"))

    server, port = await _scripted(handler)
    c = RespClient(f"redis://user:s%40cret@127.0.0.1:{port}/3")
    try:
        assert await c.execute("PING") == b"OK"
        wire = b"".join(seen)
        assert wire.startswith(encode(["AUTH", "user", "s@cret"]) + encode(["SELECT", 3]))
        assert wire.endswith(encode(["PING"]))
    finally:
        await c.close()
        server.close()


async def test_a_silent_server_times_out_and_fails_every_pending_command() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers

    server, port = await _scripted(handler)
    c = RespClient(f"redis://127.0.0.1:{port}", op_timeout_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(c.execute("GET", "a"), c.execute("GET", "b"), return_exceptions=True)
        assert all(isinstance(r, RespUnavailable) for r in results)
        assert 0.15 < loop.time() - t0 < 2.0
    finally:
        await c.close()
        server.close()


async def test_a_dropped_connection_fails_pending_commands_and_the_next_call_reconnects() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        data = await reader.read(4096)
        if connections == 1:
            writer.close()  # drop it with the command unanswered
            return
        writer.write(b":7\r\n" * data.count(b"*"))
        await writer.drain()
        await reader.read()

    server, port = await _scripted(handler)
    c = RespClient(f"redis://127.0.0.1:{port}")
    try:
        with pytest.raises(RespUnavailable):
            await c.execute("INCR", "x")
        assert await c.execute("INCR", "x") == 7
        assert connections == 2
    finally:
        await c.close()
        server.close()


async def test_nothing_listening_is_unavailable() -> None:
    server, port = await _scripted(lambda r, w: None)
    server.close()
    await server.wait_closed()
    with pytest.raises(RespUnavailable):
        await RespClient(f"redis://127.0.0.1:{port}").execute("PING")
