"""The throwaway services work: both database backends open, migrate and round-trip a row; Redis answers
and survives a restart on the same port."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.ports import free_port, port_open
from support.processes import ProcessGroup, ProcessStartError, start_process
from support.services import RedisServer

from dragonfly.storage.sql import open_database


async def test_database_opens_migrates_and_round_trips(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        expected_dialect = "sqlite" if database_url.startswith("sqlite:") else "postgres"
        assert db.dialect == expected_dialect
        assert await db.fetch_val("SELECT COUNT(*) FROM schema_migrations") >= 1
        key, value = f"smoke-{uuid.uuid4().hex}", "ünïcode ✓"
        assert await db.execute("INSERT INTO settings (key, value) VALUES ($1, $2)", key, value) == 1
        assert await db.fetch_one("SELECT key, value FROM settings WHERE key = $1", key) == {
            "key": key,
            "value": value,
        }
        async with db.transaction() as tx:
            await tx.execute("UPDATE settings SET value = $1 WHERE key = $2", "changed", key)
        assert await db.fetch_val("SELECT value FROM settings WHERE key = $1", key) == "changed"
    finally:
        await db.close()


async def test_each_database_url_is_fresh(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        assert await db.fetch_val("SELECT COUNT(*) FROM settings") == 0
    finally:
        await db.close()


@pytest.mark.postgres
def test_pg_databases_are_isolated(pg_database_url: str, pg_url: str) -> None:
    assert pg_database_url.rsplit("/", 1)[1].startswith("t_")
    assert pg_database_url.rsplit("/", 1)[0] == pg_url.rsplit("/", 1)[0]
    assert pg_database_url != pg_url


@pytest.mark.redis
async def test_redis_answers_ping_and_stores(fresh_redis_url: str) -> None:
    client = aioredis.from_url(fresh_redis_url)
    try:
        assert await client.ping() is True
        await client.set("smoke", "1")
        assert await client.get("smoke") == b"1"
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_restarts_on_the_same_port(redis_server: RedisServer, fresh_redis_url: str) -> None:
    port = redis_server.port
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.port == port
    client = aioredis.from_url(fresh_redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


def test_start_process_reports_a_process_that_dies(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('boom on stdout'); sys.exit(3)"]
    with pytest.raises(ProcessStartError) as info:
        start_process(argv, free_port(), log_dir=tmp_path, timeout_s=10)
    assert "boom on stdout" in str(info.value)
    assert "[exit status: 3]" in str(info.value)


def test_process_group_stops_everything(processes: ProcessGroup) -> None:
    port = free_port()
    server = (
        f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"
    )
    proc = processes.start([sys.executable, "-c", server], port)
    assert proc.alive and port_open(port)
    processes.stop_all()
    assert not proc.alive and not port_open(port)
