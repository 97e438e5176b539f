"""Overload (gateway/app.py): with `DRAGONFLY_MAX_INFLIGHT` requests in flight in the gateway worker,
the next one is answered at once with 503 `service_unavailable`, an OpenAI-shaped body, `retry-after`
and `x-request-id` — not queued behind them — while /healthz and /metrics still answer; once the slow
requests finish, requests succeed again."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import requests
from openai import APIStatusError, OpenAI
from support.market import market_settings, seed_buyer, seed_listing, start_serve
from support.processes import ProcessGroup

MAX_INFLIGHT = 2


def _chat(origin: str, key: str, words: int, stream: bool = False) -> requests.Response:
    return requests.post(
        f"{origin}/v1/chat/completions",
        json={
            "model": "demo/echo-1",
            "messages": [{"role": "user", "content": " ".join(["w"] * words)}],
            "stream": stream,
        },
        headers={"Authorization": f"Bearer {key}"},
        stream=stream,
        timeout=60,
    )


def test_past_max_inflight_the_gateway_answers_503_with_retry_after_then_recovers(
    tmp_path: Path, processes: ProcessGroup, demo_seller_factory: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = market_settings(f"sqlite:///{data / 'dragonfly.db'}", data)
    seller = demo_seller_factory()
    asyncio.run(seed_listing(settings, seller))
    _, key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(
        processes, settings, read_timeout_s=30, extra_env={"DRAGONFLY_MAX_INFLIGHT": str(MAX_INFLIGHT)}
    )
    seller.config.chunk_delay_s = 0.1  # after the probe: a slow seller from here on

    # MAX_INFLIGHT slow streams in flight (~3 s each).
    streams: list[requests.Response] = []
    finished: list[bytes] = []
    for _ in range(MAX_INFLIGHT):
        r = _chat(origin, key, 30, stream=True)
        assert r.status_code == 200, r.text
        streams.append(r)

    def read_all(r: requests.Response) -> None:
        finished.append(b"".join(r.iter_content(None)))

    readers = [threading.Thread(target=read_all, args=(r,), daemon=True) for r in streams]
    for t in readers:
        t.start()

    # One more: refused at once, not queued behind the slow ones.
    started = time.monotonic()
    refused = _chat(origin, key, 1)
    assert time.monotonic() - started < 1.0
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "error": {
            "message": "The gateway is at capacity; retry the request.",
            "type": "service_unavailable_error",
            "param": None,
            "code": "service_unavailable",
        }
    }
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-request-id"]
    # The OpenAI SDK sees an ordinary 503 it may retry.
    client = OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0, timeout=10)
    try:
        client.models.list()
        raise AssertionError("GET /v1/models was not refused")
    except APIStatusError as exc:
        assert exc.status_code == 503
        assert exc.response.headers["x-request-id"]
    # Probes are neither counted nor refused.
    health = requests.get(f"{origin}/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert (health.json()["inflight"], health.json()["max_inflight"]) == (MAX_INFLIGHT, MAX_INFLIGHT)
    assert requests.get(f"{origin}/metrics", timeout=10).status_code == 200

    for t in readers:
        t.join(30)
    assert len(finished) == MAX_INFLIGHT and all(b"data: [DONE]" in body for body in finished)
    # Capacity is back: requests succeed again.
    again = _chat(origin, key, 1)
    assert again.status_code == 200, again.text
    assert again.json()["choices"][0]["message"]["content"]
