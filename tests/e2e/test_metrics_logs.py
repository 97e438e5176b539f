"""`GET /metrics` and the request log through a real `dragonfly serve` (docs/operator.md, "Metrics and
logs"): exact counter values after requests made with the openai SDK, the token and loopback rules, two
Granian workers answering as one, and no secret in anything the processes write."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import requests
from openai import OpenAI
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from support.market import SECRET, Market, market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

from dragonfly.demo.seller import DemoSeller

MODEL = "demo/echo-1"
MESSAGES = [{"role": "user", "content": "Hello market"}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(origin: str, headers: dict[str, str] | None = None) -> tuple[requests.Response, Samples]:
    r = requests.get(f"{origin}/metrics", headers=headers or {}, timeout=10)
    samples: Samples = {}
    if r.status_code == 200:
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def client(origin: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=30)


def test_metrics_count_every_request_exactly(market: Market) -> None:
    sdk = client(market.origin, market.buyer_key)
    for _ in range(3):
        assert sdk.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content
    stream = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: Hello market"
    with pytest.raises(openai.AuthenticationError):
        client(market.origin, "sk-df-" + secrets.token_urlsafe(32)).chat.completions.create(
            model=MODEL, messages=MESSAGES
        )
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nobody/sells-this", messages=MESSAGES)
    # The receipt read flushes the settlement log, so the settlement writer's counters are exact too.
    raw = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    r = requests.get(
        f"{market.base_url}/generation",
        params={"id": raw.headers["x-request-id"]},
        headers={"Authorization": f"Bearer {market.buyer_key}"},
        timeout=10,
    )
    assert r.status_code == 200

    resp, m = scrape(market.origin)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    listing = market.listing_id
    labels = f'error_code="",listing_id="{listing}",model="{MODEL}",status="completed"'
    assert f"dragonfly_trades_total{{{labels}}} 5.0" in resp.text.splitlines()
    done = {"model": MODEL, "listing_id": listing, "status": "completed", "error_code": ""}
    assert value(m, "dragonfly_trades_total", **done) == 5.0
    # A model nobody sells is refused before any seller, under one label whatever the buyer typed.
    unknown = {"model": "_other", "listing_id": "", "status": "refused", "error_code": "model_not_found"}
    assert value(m, "dragonfly_trades_total", **unknown) == 1.0
    assert value(m, "dragonfly_request_duration_seconds_count", model=MODEL, status="completed") == 5.0
    assert value(m, "dragonfly_ttft_seconds_count", model=MODEL) == 1.0  # streams only
    assert value(m, "dragonfly_upstream_seconds_count", listing_id=listing, outcome="ok") == 5.0
    assert value(m, "dragonfly_rank_seconds_count") == 5.0  # the unknown model never reached ranking
    chat = "/v1/chat/completions"
    assert value(m, "dragonfly_http_requests_total", route=chat, error_code="") == 5.0
    assert value(m, "dragonfly_http_requests_total", route=chat, error_code="invalid_api_key") == 1.0
    assert value(m, "dragonfly_http_requests_total", route=chat, error_code="model_not_found") == 1.0
    assert value(m, "dragonfly_http_requests_total", route="/v1/generation", error_code="") == 1.0
    assert value(m, "dragonfly_holds_in_flight") == 0.0
    assert value(m, "dragonfly_settlement_uncommitted_trades") == 0.0
    assert value(m, "dragonfly_settlement_committed_trades_total") == 6.0  # 5 completed, 1 refused
    assert value(m, "dragonfly_listing_health", listing_id=listing, model=MODEL) == 0.0
    assert value(m, "dragonfly_state_store_errors_total", operation="admit") is None
    # Neither a key nor an account is ever a label.
    assert market.buyer_key not in resp.text and market.buyer_id not in resp.text
    # Without trusted proxies a forwarded address is not believed: the loopback peer is the client.
    spoofed, _ = scrape(market.origin, {"x-forwarded-for": "203.0.113.7"})
    assert spoofed.status_code == 200


def _seeded(tmp_path: Path, seller: DemoSeller) -> tuple[Any, str, str, str]:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    _, listing_id = asyncio.run(seed_listing(settings, seller))
    buyer_id, key = asyncio.run(seed_buyer(settings, credit_cents=500))
    return settings, listing_id, buyer_id, key


def test_metrics_token_is_required_when_set(
    tmp_path: Path, demo_seller: DemoSeller, processes: ProcessGroup
) -> None:
    settings, _, _, _ = _seeded(tmp_path, demo_seller)
    token = secrets.token_urlsafe(24)
    origin = start_serve(processes, settings, extra_env={"DRAGONFLY_METRICS_TOKEN": token})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        r, _ = scrape(origin, headers)
        assert r.status_code == 401, r.text  # loopback is not enough once a token is set
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer" and r.headers["x-request-id"]
        assert token not in r.text
    r, m = scrape(origin, {"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert value(m, "dragonfly_http_requests_total", route="/metrics", error_code="invalid_api_key") == 3.0


def test_metrics_answer_loopback_clients_only(
    tmp_path: Path, demo_seller: DemoSeller, processes: ProcessGroup
) -> None:
    settings, _, _, _ = _seeded(tmp_path, demo_seller)
    # The test client is on loopback: a trusted proxy there forwards for whichever client it names.
    origin = start_serve(processes, settings, extra_env={"DRAGONFLY_TRUSTED_PROXIES": "127.0.0.1"})
    r, _ = scrape(origin, {"x-forwarded-for": "203.0.113.7"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "permission_denied" and r.headers["x-request-id"]
    assert scrape(origin, {"x-forwarded-for": "::ffff:127.0.0.1"})[0].status_code == 200
    assert scrape(origin)[0].status_code == 200


def _per_worker_trades(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own completed trades, from its file in the multiprocess directory."""
    out: dict[str, float] = {}
    for f in metrics_dir.glob("counter_*.db"):
        total = 0.0
        for family in MultiProcessCollector.merge([str(f)]):
            for s in family.samples:
                if s.name == "dragonfly_trades_total" and s.labels.get("status") == "completed":
                    total += s.value
        out[f.stem.removeprefix("counter_")] = total
    return out


def _wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_two_workers_answer_as_one(
    pg_database_url: str,
    fresh_redis_url: str,
    tmp_path: Path,
    demo_seller: DemoSeller,
    processes: ProcessGroup,
) -> None:
    settings = market_settings(pg_database_url, tmp_path / "data")
    _, listing_id = asyncio.run(seed_listing(settings, demo_seller))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=500))
    origin = start_serve(
        processes, settings, extra_env={"DRAGONFLY_REDIS_URL": fresh_redis_url, "DRAGONFLY_WORKERS": "2"}
    )
    runs = list((tmp_path / "data" / "metrics").glob("run-*"))
    assert len(runs) == 1
    body = orjson.dumps({"model": MODEL, "messages": MESSAGES})
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    sent = 0
    # Each request on a new connection: the workers take turns accepting until both have served.
    for _ in range(20):
        for _ in range(10):
            r = requests.post(f"{origin}/v1/chat/completions", data=body, headers=headers, timeout=10)
            assert r.status_code == 200, r.text
            sent += 1
        time.sleep(1.2)  # every worker flushes its counts within a second
        if sum(1 for n in _per_worker_trades(runs[0]).values() if n > 0) >= 2:
            break
    served = _per_worker_trades(runs[0])
    assert sum(1 for n in served.values() if n > 0) == 2, served
    assert sum(served.values()) == sent

    completed = {"model": MODEL, "listing_id": listing_id, "status": "completed", "error_code": ""}

    def every_answer_counts_all() -> bool:
        # Whichever worker answers the scrape, it answers for both.
        return all(
            value(scrape(origin)[1], "dragonfly_trades_total", **completed) == float(sent) for _ in range(6)
        )

    _wait_for(every_answer_counts_all)
    _, m = scrape(origin)
    assert value(m, "dragonfly_upstream_seconds_count", listing_id=listing_id, outcome="ok") == float(sent)
    assert value(m, "dragonfly_holds_in_flight") == 0.0
    assert value(m, "dragonfly_listing_health", listing_id=listing_id, model=MODEL) == 0.0  # once, not twice


def test_logs_are_json_lines_without_secrets(
    tmp_path: Path, demo_seller_factory: Callable[..., DemoSeller], processes: ProcessGroup
) -> None:
    provider_key = "sk-provider-" + secrets.token_urlsafe(24)
    seller = demo_seller_factory(api_key=provider_key)
    settings, listing_id, _, buyer_key = _seeded(tmp_path, seller)
    metrics_token = secrets.token_urlsafe(24)
    origin = start_serve(
        processes,
        settings,
        extra_env={"DRAGONFLY_LOG_LEVEL": "debug", "DRAGONFLY_METRICS_TOKEN": metrics_token},
    )
    serve = processes.started[-1]
    secrets_seen: dict[str, str] = {
        "buyer key": buyer_key,
        "provider key": provider_key,
        "server secret": SECRET,
        "metrics token": metrics_token,
        "buyer password": "buyer-password-1",
        "seller password": "seller-password-1",
    }
    ids: dict[str, str] = {}

    sdk = client(origin, buyer_key)
    raw = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    ids["chat"] = raw.headers["x-request-id"]
    stream = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    made_up = "sk-df-" + secrets.token_urlsafe(32)
    secrets_seen["refused key"] = made_up
    with pytest.raises(openai.AuthenticationError) as refused:
        client(origin, made_up).chat.completions.create(model=MODEL, messages=MESSAGES)
    ids["refused key"] = refused.value.response.headers["x-request-id"]
    bad = requests.post(
        f"{origin}/v1/chat/completions",
        data=b'{"model": "demo/echo-1", "messages": [',
        headers={"Authorization": f"Bearer {buyer_key}", "content-type": "application/json"},
        timeout=10,
    )
    assert bad.status_code == 400
    ids["bad body"] = bad.headers["x-request-id"]
    wrong = requests.post(
        f"{origin}/api/auth/login",
        json={"email": "buyer@e2e.test", "password": "not-it-" + SECRET},
        timeout=10,
    )
    assert wrong.status_code == 401
    login = requests.post(
        f"{origin}/api/auth/login",
        json={"email": "buyer@e2e.test", "password": "buyer-password-1"},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    session = login.json()["access_token"]
    secrets_seen["session token"] = session
    made = requests.post(
        f"{origin}/api/management-keys",
        json={"name": "ops", "mgmt_scope": "full"},
        headers={"Authorization": f"Bearer {session}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    management_key = made.json()["key"]
    secrets_seen["management key"] = management_key
    listed = requests.get(
        f"{origin}/api/keys", headers={"Authorization": f"Bearer {management_key}"}, timeout=10
    )
    assert listed.status_code == 200, listed.text
    unknown = requests.get(f"{origin}/api/keys", headers={"Authorization": "Bearer sk-df-x"}, timeout=10)
    assert unknown.status_code == 401
    assert scrape(origin, {"Authorization": f"Bearer {metrics_token}"})[0].status_code == 200

    assert serve.stop() == 0
    out = serve.output()
    for what, secret in secrets_seen.items():
        assert secret not in out, f"the {what} appears in the logs"
    # Also no fragment long enough to identify a key (a prefix shown "for reference" would still leak).
    for what in ("buyer key", "management key", "refused key", "provider key"):
        tail = secrets_seen[what][-16:]
        assert tail not in out, f"part of the {what} appears in the logs"

    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    requests_logged = {line["request_id"]: line for line in lines if line["logger"] == "dragonfly.requests"}
    chat = requests_logged[ids["chat"]]
    assert chat["level"] == "INFO" and chat["status"] == "completed" and chat["listing_id"] == listing_id
    assert chat["model"] == MODEL and chat["key_id"] and chat["attempts"] == 1 and chat["http_status"] == 200
    assert chat["latency_ms"] >= 0 and chat["ttft_ms"] is not None
    assert requests_logged[ids["refused key"]]["error_code"] == "invalid_api_key"
    assert requests_logged[ids["refused key"]]["key_id"] is None
    assert requests_logged[ids["bad body"]]["http_status"] == 400
    streamed = [line for line in requests_logged.values() if line.get("streamed")]
    assert len(streamed) == 1 and streamed[0]["status"] == "completed"
    # One line per request: a refusal raised out of a trade is not logged twice.
    logged_ids = [line["request_id"] for line in lines if line["logger"] == "dragonfly.requests"]
    assert len(logged_ids) == len(set(logged_ids))
