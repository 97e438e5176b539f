"""deploy/ as it ships, run as local processes (tests/support/deploy.py): nginx with deploy/nginx.conf in
front of two gateways and the control plane, each started with compose.yaml's command and environment, on
one PostgreSQL and one Redis. The real OpenAI SDK drives it through nginx:

- key IP allow/deny lists see the client's address through the proxy, and an X-Forwarded-For the client
  sends is not believed (nginx replaces it; a gateway believes only its trusted proxy);
- a key budget holds across the two gateways behind the balancer;
- streams pass through as they are produced, and nginx's body limit is the gateway's, with its error;
- a gateway killed (SIGKILL) under load loses no trade: every request is answered or fails visibly, the
  books check out, and the other gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import requests
from openai import OpenAI
from support.deploy import (
    METRICS_TOKEN,
    NginxPrefix,
    Topology,
    dragonfly_cli,
    kill_tree,
    metric_total,
    nginx_binary,
    start_topology,
)
from support.market import SECRET, market_settings, seed_buyer, seed_listing
from support.processes import ProcessGroup

from dragonfly.config import Settings
from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.ledger import buyer_cash
from dragonfly.security.api_keys import KeyHasher
from dragonfly.services.keys import create_buyer_key
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.state.redis import RedisStateStore

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MODEL = "demo/echo-1"
HELLO = [{"role": "user", "content": "Hello"}]
# The seller echoes it word by word, cut at max_tokens: a 5-token answer costs exactly its hold.
WORDS = [{"role": "user", "content": " ".join(f"word{i}" for i in range(20))}]
ALLOWED, OTHER = "127.0.0.2", "127.0.0.3"  # client source addresses (all of 127/8 is loopback)


@dataclass
class Deployed:
    topology: Topology
    settings: Settings
    seller: DemoSeller
    buyer_id: str
    buyer_key: str
    work_dir: Path


@pytest.fixture
def deploy(
    pg_database_url: str,
    fresh_redis_url: str,
    tmp_path: Path,
    processes: ProcessGroup,
    demo_seller_factory: Callable[..., DemoSeller],
) -> Iterator[Callable[..., Deployed]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/ensure-system-deps.sh installs it)")
    prefixes: list[NginxPrefix] = []
    started: list[Topology] = []

    def start(
        *, seller: dict[str, Any] | None = None, prices: tuple[str, str] = ("1.00", "2.00"), **env: str
    ) -> Deployed:
        settings = market_settings(pg_database_url, tmp_path / "data")
        demo = demo_seller_factory(**(seller or {}))
        asyncio.run(seed_listing(settings, demo, input_price=prices[0], output_price=prices[1]))
        buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=1000))
        prefix = NginxPrefix()
        prefixes.append(prefix)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        topology = start_topology(
            processes,
            prefix,
            secret_key=SECRET,
            database_url=pg_database_url,
            redis_url=fresh_redis_url,
            work_dir=work,
            # The demo seller listens on loopback.
            extra_env={"DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1", **env},
        )
        started.append(topology)
        return Deployed(topology, settings, demo, buyer_id, key, work)

    yield start
    for topology in started:
        topology.nginx.stop()
    for prefix in prefixes:
        prefix.remove()


def sdk(origin: str, key: str, *, source: str | None = None, max_retries: int = 0) -> OpenAI:
    """The OpenAI SDK, connecting from `source` (a loopback address) when given."""
    http_client = None
    if source is not None:
        http_client = openai.DefaultHttpxClient(transport=httpx2.HTTPTransport(local_address=source))
    return OpenAI(
        base_url=f"{origin}/v1", api_key=key, max_retries=max_retries, timeout=30, http_client=http_client
    )


def outcome(
    origin: str,
    key: str,
    *,
    source: str | None = None,
    forwarded_for: str | None = None,
    messages: list[dict[str, str]] = HELLO,
) -> str:
    """'ok', or the error code the SDK raised."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    try:
        reply = sdk(origin, key, source=source).chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=5,
            extra_headers=headers,
        )
    except openai.APIStatusError as exc:
        return str(exc.code)
    assert (reply.choices[0].message.content or "").startswith("Echo: ")
    return "ok"


async def _key(settings: Settings, buyer_id: str, **fields: Any) -> tuple[str, str]:
    db = await open_database(settings.database_url)
    try:
        made = await create_buyer_key(db, KeyHasher(settings.secret_key), account_id=buyer_id, **fields)
        return made["id"], made["key"]
    finally:
        await db.close()


def until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not in effect within {within_s} s"
        time.sleep(0.05)


def test_key_ip_lists_see_the_client_through_the_proxy(deploy: Callable[..., Deployed]) -> None:
    d = deploy()
    origin = d.topology.origin
    allow_id, allow_key = asyncio.run(_key(d.settings, d.buyer_id, ip_whitelist=[f"{ALLOWED}/32"]))
    _, deny_key = asyncio.run(_key(d.settings, d.buyer_id, ip_blacklist=[f"{OTHER}/32"]))

    for _ in range(2):  # round robin: each case reaches both gateways
        assert outcome(origin, allow_key, source=ALLOWED) == "ok"
        assert outcome(origin, allow_key, source=OTHER) == "ip_not_allowed"
        # A client cannot claim the allowed address: nginx replaces its X-Forwarded-For.
        assert outcome(origin, allow_key, source=OTHER, forwarded_for=ALLOWED) == "ip_not_allowed"
        assert outcome(origin, deny_key, source=OTHER) == "ip_not_allowed"
        assert outcome(origin, deny_key, source=OTHER, forwarded_for="127.0.0.9") == "ip_not_allowed"
        assert outcome(origin, deny_key, source=ALLOWED) == "ok"

    # The gateway's own rule, without nginx in between: X-Forwarded-For counts only from its trusted proxy
    # (nginx's address, 127.0.0.1 here), so a client connecting directly cannot use it either.
    for gateway in d.topology.gateways:
        assert outcome(gateway.origin, allow_key, source=OTHER, forwarded_for=ALLOWED) == "ip_not_allowed"
        assert outcome(gateway.origin, allow_key, source="127.0.0.1", forwarded_for=ALLOWED) == "ok"

    # The page the verification mail links to is the control plane's, through the balancer.
    page = requests.get(f"{origin}/verify", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # So is the dashboard, its page and its files.
    for path, kind in (("/", "text/html"), ("/dashboard/js/app.js", "text/javascript")):
        page = requests.get(f"{origin}{path}", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith(kind), path
        assert "script-src 'self'" in page.headers["content-security-policy"]

    # A change through the balancer's /api/ route (straight to the control plane) reaches both gateways.
    login = requests.post(
        f"{origin}/api/auth/login",
        json={"email": "buyer@e2e.test", "password": "buyer-password-1"},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    patched = requests.patch(
        f"{origin}/api/keys/{allow_id}",
        json={"ip_blacklist": [f"{ALLOWED}/32"]},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    until(
        lambda: all(
            outcome(g.origin, allow_key, source="127.0.0.1", forwarded_for=ALLOWED) == "ip_not_allowed"
            for g in d.topology.gateways
        )
    )
    assert outcome(origin, allow_key, source=ALLOWED) == "ip_not_allowed"


def _gateway_metrics(origin: str, token: str | None = METRICS_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{origin}/metrics", headers=headers, timeout=10)


def test_a_key_budget_holds_across_the_gateways_behind_the_proxy(deploy: Callable[..., Deployed]) -> None:
    # Input free, 5 output tokens at $2000 per 1M: each request holds and costs exactly one cent.
    d = deploy(seller={"chunk_delay_s": 0.05}, prices=("0", "2000"))
    budget_cents, requests_sent = 4, 40
    _, key = asyncio.run(_key(d.settings, d.buyer_id, monthly_budget_cents=budget_cents))
    before = asyncio.run(_balance(d.settings, d.buyer_id))

    def one(_: int) -> str:
        return outcome(d.topology.origin, key, messages=WORDS)

    with ThreadPoolExecutor(max_workers=requests_sent) as pool:
        codes = Counter(pool.map(one, range(requests_sent)))
    assert 1 <= codes["ok"] <= budget_cents, codes
    assert codes["ok"] + codes["budget_exceeded"] == requests_sent, codes
    spent = before - asyncio.run(_balance(d.settings, d.buyer_id))
    assert spent == codes["ok"] * 10_000 <= budget_cents * 10_000

    # Both gateways took part (each is its own scrape target, reached directly with the token), and the
    # balancer does not answer /metrics (a scrape there would land on either instance).
    for gateway in d.topology.gateways:
        scraped = _gateway_metrics(gateway.origin)
        assert scraped.status_code == 200, scraped.text
        assert metric_total(scraped.text, "dragonfly_trades_total") > 0
        assert _gateway_metrics(gateway.origin, token="wrong").status_code == 401
    assert _gateway_metrics(d.topology.origin).status_code == 404


async def _balance(settings: Settings, buyer_id: str) -> int:
    db = await open_database(settings.database_url)
    try:
        return await ledger.balance(db, buyer_cash(buyer_id))
    finally:
        await db.close()


def test_streams_pass_through_as_produced_and_body_limits_match(deploy: Callable[..., Deployed]) -> None:
    d = deploy(seller={"chunk_delay_s": 0.25})
    client = sdk(d.topology.origin, d.buyer_key)
    started = time.monotonic()
    arrivals = []
    text = ""
    for chunk in client.chat.completions.create(model=MODEL, messages=WORDS, max_tokens=6, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            text += chunk.choices[0].delta.content
    assert text.startswith("Echo:"), text
    # The seller spaces its tokens 0.25 s apart; a buffering proxy would hand them over together.
    assert len(arrivals) >= 4, arrivals
    assert arrivals[-1] - arrivals[0] >= 0.6, f"chunks arrived together: {arrivals}"

    limit = int(d.topology.gateway_env["DRAGONFLY_MAX_BODY_BYTES"])

    def post(origin: str, size: int) -> requests.Response:
        head, tail = (
            b'{"model":"demo/echo-1","max_tokens":5,"messages":[{"role":"user","content":"Hello"}],"pad":"',
            b'"}',
        )
        body = head + b"x" * (size - len(head) - len(tail)) + tail
        return requests.post(
            f"{origin}/v1/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {d.buyer_key}", "Content-Type": "application/json"},
            timeout=60,
        )

    # Past nginx's default 1 MiB and up to the limit, a request is answered by a gateway.
    for size in (2 * 1024 * 1024, limit):
        answered = post(d.topology.origin, size)
        assert answered.status_code == 200, answered.text[:300]
        assert answered.json()["choices"][0]["message"]["content"] == "Echo: Hello"
    # One byte more: nginx refuses it with the gateway's own error, field for field.
    from_nginx = post(d.topology.origin, limit + 1)
    from_gateway = post(d.topology.gateways[0].origin, limit + 1)
    assert from_nginx.status_code == from_gateway.status_code == 413
    assert from_nginx.headers["content-type"].startswith("application/json")
    assert from_nginx.json() == from_gateway.json()


@dataclass
class Call:
    started: float
    ended: float
    stream: bool
    request_id: str | None
    error: str | None  # None: answered in full
    wrong: bool = False  # answered, but not the full answer


def _call(client: OpenAI, stream: bool) -> Call:
    started = time.monotonic()
    request_id = None
    try:
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=HELLO, max_tokens=8, stream=True
            )
            request_id = raw.headers.get("x-request-id")
            text, finish = "", None
            for chunk in raw.parse():
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            assert finish is not None, "a stream ended without a finish reason"
        else:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, max_tokens=8)
            request_id = raw.headers.get("x-request-id")
            text = raw.parse().choices[0].message.content or ""
        assert text == "Echo: Hello", text
    except AssertionError as exc:  # raised here it would only end the load thread: recorded instead
        return Call(started, time.monotonic(), stream, request_id, f"wrong answer: {exc}", wrong=True)
    except Exception as exc:  # a failure the client sees: connection cut mid-stream, retries exhausted
        return Call(started, time.monotonic(), stream, request_id, f"{type(exc).__name__}: {exc}")
    return Call(started, time.monotonic(), stream, request_id, None)


async def _trades(settings: Settings, buyer_id: str) -> dict[str, tuple[str, int]]:
    db = await open_database(settings.database_url)
    try:
        rows = await db.fetch_all(
            "SELECT id, status, cost_micros FROM trades WHERE buyer_account_id = $1", buyer_id
        )
        return {r["id"]: (r["status"], int(r["cost_micros"])) for r in rows}
    finally:
        await db.close()


async def _stuck(settings: Settings, redis_url: str, buyer_id: str) -> tuple[int, int | None]:
    db = await open_database(settings.database_url)
    store = RedisStateStore(redis_url)
    try:
        view = await store.account_view(buyer_id)
        return await ledger.balance(db, buyer_cash(buyer_id)), (
            view.available_micros if view is not None else None
        )
    finally:
        await store.close()
        await db.close()


LEASE_S = 3.0  # a hold the killed gateway took lapses this long after it was taken


def test_a_gateway_killed_under_load_loses_no_trade(deploy: Callable[..., Deployed]) -> None:
    d = deploy(seller={"chunk_delay_s": 0.05}, DRAGONFLY_HOLD_LEASE_S=str(LEASE_S))
    victim, survivor = d.topology.gateways
    calls: list[Call] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n: int) -> None:
        # SDK retries (its default policy) cover a request nginx could not hand to a live gateway.
        client = sdk(d.topology.origin, d.buyer_key, max_retries=3)
        for i in range(200):  # bounded; `stop` ends it first
            if stop.is_set():
                return
            call = _call(client, stream=(n + i) % 2 == 0)
            with lock:
                calls.append(call)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    until(lambda: len(calls) >= 18, within_s=30)
    killed_at = time.monotonic()
    kill_tree(victim.process)
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert not victim.process.alive and survivor.process.alive
    assert not [c for c in calls if c.wrong], [c for c in calls if c.wrong]
    in_flight = [c for c in calls if c.started < killed_at < c.ended]
    assert in_flight, "no request was in flight when the gateway was killed"
    failed = [c for c in calls if c.error is not None]
    # Only a stream the killed gateway had started answering can fail (the SDK does not retry a broken
    # stream); it fails visibly, never as a short answer. Everything else was answered in full.
    for c in failed:
        assert c.stream and c.started < killed_at, c
    after = [c for c in calls if c.started > killed_at]
    assert len(after) >= 6 and all(c.error is None for c in after), after
    answered = {c.request_id for c in calls if c.error is None}
    assert None not in answered

    # No trade lost: every answer has its completed, charged trade; the only trades no one heard about are
    # ones the killed gateway committed just before it died (at most one per request in flight then).
    trades = asyncio.run(_trades(d.settings, d.buyer_id))
    for request_id in answered:
        status, cost = trades.get(str(request_id), ("missing", 0))
        assert status == "completed" and cost > 0, (request_id, status)
    unheard = {t for t, (status, _) in trades.items() if status == "completed"} - answered
    assert len(unheard) <= len(in_flight), unheard

    # The books: every trade has its journal, balances equal their entries (at once)...
    env = d.topology.control_env
    books = dragonfly_cli(["admin", "check-ledger", "--no-state"], env, d.work_dir)
    assert books.returncode == 0, books.stdout + books.stderr
    # ...and once the killed gateway's holds lapsed and the survivor re-seeded, Redis agrees with the
    # database and holds nothing for the buyer. The survivor still serves through the balancer.
    time.sleep(LEASE_S)
    assert outcome(d.topology.origin, d.buyer_key) == "ok"
    deadline = time.monotonic() + 15
    while True:
        state = dragonfly_cli(["admin", "check-ledger"], env, d.work_dir)
        balance, available = asyncio.run(_stuck(d.settings, env["DRAGONFLY_REDIS_URL"], d.buyer_id))
        if state.returncode == 0 and available == balance:
            break
        assert time.monotonic() < deadline, (state.stdout + state.stderr, balance, available)
        time.sleep(1.0)
