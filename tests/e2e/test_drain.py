"""SIGTERM to `dragonfly serve` drains the gateway with a deadline (gateway/drain.py): new connections
are refused at once and a request arriving on a connection already open is answered 503; a stream in
flight that ends before the deadline completes; at the deadline a slower stream is ended with the
OpenAI-shaped error event and a non-streamed request still waiting for its seller gets a 503, both
settled (the stream's delivered part billed, no hold left, `dragonfly admin check-ledger` passes); and
the whole process tree is gone within the deadline plus a small margin, even with an idle keep-alive
connection and a client connection that sent half a request head (which Granian alone would wait ~10 s
for)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from support.market import SECRET, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ManagedProcess, ProcessGroup

from dragonfly.storage.sql import open_database
from dragonfly.storage.state.redis import RedisStateStore

DRAIN_S = 4.0
# What the tree may take past the deadline: the requests it ended settle and answer (≤ 1 s), Granian
# gets 0.5 s to close its connections, then the runtime stops and every process exits.
MARGIN_S = 3.0
CHUNK_DELAY_S = 0.1  # the demo seller streams one word per 0.1 s


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True, check=False
        )
        kids = {int(x) for x in out.stdout.split()}
        found |= kids
        todo += kids
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _tree(serve: ManagedProcess) -> set[int]:
    """serve's children: the control plane, Granian's main process and its worker."""
    deadline = time.monotonic() + 30
    while len(tree := _descendants(serve.pid)) < 3:
        assert time.monotonic() < deadline, (tree, serve.describe())
        time.sleep(0.1)
    return tree


@dataclass
class Call:
    """One chat completion run in a thread: what came back and when it ended."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    body: bytes = b""
    ended_at: float = 0.0
    first_event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def payloads(self) -> list[dict[str, Any]]:
        return [orjson.loads(e) for e in self.events if e != b"[DONE]"]


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def _start_call(origin: str, key: str, words: int, stream: bool) -> tuple[Call, threading.Thread]:
    call = Call()

    def run() -> None:
        try:
            r = requests.post(
                f"{origin}/v1/chat/completions",
                json={
                    "model": "demo/echo-1",
                    "messages": [{"role": "user", "content": _words(words)}],
                    "stream": stream,
                },
                headers={"Authorization": f"Bearer {key}"},
                stream=stream,
                timeout=60,
            )
            call.status, call.headers = r.status_code, dict(r.headers)
            if stream and r.status_code == 200:
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        call.events.append(line[6:])
                        call.first_event.set()
            else:
                call.body = r.content
        except BaseException as exc:
            call.error = exc
        finally:
            call.ended_at = time.monotonic()
            call.first_event.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return call, thread


def _raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def _idle_keepalive(port: int) -> socket.socket:
    """A connection that served one request and stays open (HTTP/1.1 keep-alive)."""
    sock = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    got = b""
    while b"}" not in got:
        got += sock.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got
    return sock


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def _check_ledger(settings: Any, redis_url: str | None) -> None:
    env = {
        **os.environ,
        "DRAGONFLY_DATABASE_URL": settings.database_url,
        "DRAGONFLY_DATA_DIR": settings.data_dir,
        "DRAGONFLY_SECRET_KEY": SECRET,
    }
    if redis_url:
        env["DRAGONFLY_REDIS_URL"] = redis_url  # the state check too: holds, key spend
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", "admin", "check-ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def _trades(db_url: str, redis_url: str | None, buyer_id: str) -> tuple[dict[str, dict], int | None]:
    db = await open_database(db_url)
    try:
        rows = await db.fetch_all(
            "SELECT id, status, error_code, finish_reason, cost_micros, hold_micros, tokens_completion "
            "FROM trades WHERE buyer_account_id = $1",
            buyer_id,
        )
    finally:
        await db.close()
    held = None
    if redis_url:
        store = RedisStateStore(redis_url)
        try:
            held = await store.held_micros(buyer_id)
        finally:
            await store.close()
    return {r["id"]: dict(r) for r in rows}, held


def _backend(backend: str, request: pytest.FixtureRequest, data: Path) -> tuple[str, str | None]:
    if backend == "pg-redis":
        return request.getfixturevalue("pg_database_url"), request.getfixturevalue("fresh_redis_url")
    data.mkdir()
    return f"sqlite:///{data / 'dragonfly.db'}", None


@pytest.mark.parametrize("backend", ["embedded", "pg-redis"])
def test_sigterm_drains_then_ends_what_is_left_at_the_deadline_and_the_tree_exits(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Any,
) -> None:
    data = tmp_path / "data"
    db_url, redis_url = _backend(backend, request, data)
    settings = market_settings(db_url, data)
    seller = demo_seller_factory()
    asyncio.run(seed_listing(settings, seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    env = {"DRAGONFLY_DRAIN_TIMEOUT_S": str(DRAIN_S)}
    if redis_url:
        env["DRAGONFLY_REDIS_URL"] = redis_url
    origin = start_serve(processes, settings, read_timeout_s=30, extra_env=env)
    serve = processes.started[-1]
    port = int(origin.rsplit(":", 1)[1])
    tree = _tree(serve)
    seller.config.chunk_delay_s = CHUNK_DELAY_S  # after the probe: slow answers from here on

    asked = seller.stats.requests
    idle = _idle_keepalive(port)
    half_open = _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Ty")
    late = _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n")  # its head completes later
    short, short_thread = _start_call(origin, key, 10, stream=True)  # ~1.1 s of words
    slow, slow_thread = _start_call(origin, key, 300, stream=True)  # ~30 s of words
    waiting, waiting_thread = _start_call(origin, key, 300, stream=False)  # its body after ~30 s
    assert short.first_event.wait(10) and slow.first_event.wait(10), (short, slow)
    reached_by = time.monotonic() + 10
    while seller.stats.requests < asked + 3:  # the non-streamed call reached the seller too
        assert time.monotonic() < reached_by, seller.stats
        time.sleep(0.02)

    serve.signal(signal.SIGTERM)
    sigterm_at = time.monotonic()
    while not _refused(port):  # the listener is closed at once
        assert time.monotonic() - sigterm_at < 2, "new connections still accepted after SIGTERM"
        time.sleep(0.05)
    # A request that reaches the gateway on a connection opened before SIGTERM is turned away.
    late.sendall(b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
    answer = late.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"retry-after" in answer.lower() and b"service_unavailable" in answer, answer

    assert serve.proc.wait(timeout=DRAIN_S + 30) == 0, serve.describe()
    exited_after = time.monotonic() - sigterm_at
    deadline = time.monotonic() + 1
    while alive := [p for p in tree if _running(p)]:
        assert time.monotonic() < deadline, f"outlived serve: {alive}"
        time.sleep(0.05)
    assert exited_after <= DRAIN_S + MARGIN_S, (exited_after, serve.describe())
    for thread in (short_thread, slow_thread, waiting_thread):
        thread.join(10)
    for sock in (idle, half_open):  # closed, not left hanging
        sock.settimeout(2)
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass
        sock.close()
    late.close()

    # In flight at SIGTERM and done before the deadline: completed as if nothing happened.
    assert short.error is None and short.status == 200, short
    assert short.events[-1] == b"[DONE]"
    assert [p for p in short.payloads() if "error" in p] == []
    assert short.payloads()[-1]["choices"][0]["finish_reason"] == "stop"
    assert short.ended_at - sigterm_at < DRAIN_S
    # Still streaming at the deadline: ended there with the error event, then [DONE].
    assert slow.error is None and slow.status == 200, slow
    assert slow.events[-1] == b"[DONE]"
    last = slow.payloads()[-1]
    assert last["error"]["code"] == "service_unavailable", last
    assert last["choices"][0]["finish_reason"] == "error", last
    assert DRAIN_S - 0.5 <= slow.ended_at - sigterm_at <= DRAIN_S + 2, slow.ended_at - sigterm_at
    # Waiting for its seller at the deadline: a 503 the SDK retries (on another instance).
    assert waiting.error is None and waiting.status == 503, (waiting.status, waiting.body)
    assert orjson.loads(waiting.body)["error"]["code"] == "service_unavailable"
    assert "retry-after" in waiting.headers and "x-request-id" in waiting.headers
    assert DRAIN_S - 0.5 <= waiting.ended_at - sigterm_at <= DRAIN_S + 2

    # The books: every trade settled once, nothing held, the ledger checks out.
    trades, held = asyncio.run(_trades(settings.database_url, redis_url, buyer_id))
    done = trades[short.headers["x-request-id"]]
    assert (done["status"], done["finish_reason"]) == ("completed", "stop") and done["cost_micros"] > 0
    ended = trades[slow.headers["x-request-id"]]
    assert (ended["status"], ended["error_code"]) == ("failed", "service_unavailable"), ended
    # The words delivered before the deadline are billed, within the hold.
    assert 0 < ended["tokens_completion"] < 300 and 0 < ended["cost_micros"] <= ended["hold_micros"]
    refused = trades[waiting.headers["x-request-id"]]
    assert (refused["status"], refused["error_code"], refused["cost_micros"]) == (
        "failed",
        "service_unavailable",
        0,
    )
    if held is not None:
        assert held == 0, "a hold outlived the drain"
    _check_ledger(settings, redis_url)


def test_nothing_in_flight_exits_at_once_despite_idle_and_half_open_connections(
    tmp_path: Path, processes: ProcessGroup, demo_seller_factory: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = market_settings(f"sqlite:///{data / 'dragonfly.db'}", data)
    asyncio.run(seed_listing(settings, demo_seller_factory()))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    # A long deadline: with nothing in flight, nothing waits for it.
    origin = start_serve(processes, settings, extra_env={"DRAGONFLY_DRAIN_TIMEOUT_S": "60"})
    serve = processes.started[-1]
    port = int(origin.rsplit(":", 1)[1])
    tree = _tree(serve)
    r = requests.post(
        f"{origin}/v1/chat/completions",
        json={"model": "demo/echo-1", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    idle = _idle_keepalive(port)
    half_open = _raw(port, b"GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthoriz")
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)  # connected, sent nothing

    serve.signal(signal.SIGTERM)
    sigterm_at = time.monotonic()
    assert serve.proc.wait(timeout=90) == 0, serve.describe()
    exited_after = time.monotonic() - sigterm_at
    deadline = time.monotonic() + 1
    while alive := [p for p in tree if _running(p)]:
        assert time.monotonic() < deadline, f"outlived serve: {alive}"
        time.sleep(0.05)
    # Granian alone keeps the half-open connection until the header deadline (10 s by default).
    assert exited_after < MARGIN_S, (exited_after, serve.describe())
    for sock in (idle, half_open, silent):
        sock.close()
    _check_ledger(settings, None)
