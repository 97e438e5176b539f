"""Locust users speaking the OpenAI API: chat non-stream, chat stream (TTFT and total), embeddings.

Run it only as a subprocess (Locust monkey-patches the process with gevent on import):

    BENCH_MODEL=echo-1 BENCH_API_KEY=... BENCH_SCENARIO=chat BENCH_HIST_OUT=/tmp/h.json \
        locust -f benchmarks/load/locustfile.py --headless -u 16 -r 16 -t 15s --host http://127.0.0.1:PORT

Environment:
    BENCH_MODEL       model name to ask for (default echo-1)
    BENCH_API_KEY     bearer key
    BENCH_SCENARIO    chat | stream | embed | mix (default chat)
    BENCH_RATE        per-user request rate in requests/s, as Poisson arrivals (exponential think time; so
                      users do not fire in lock-step bursts); 0: closed loop, as fast as possible
    BENCH_HIST_OUT    where to write this process's own latency histograms (µs resolution) as JSON

Locust's own percentiles are rounded to whole milliseconds, so every request event is also recorded here,
in microseconds, into a mergeable histogram (3 significant digits) written at the end of the run.
Streams fire two extra events: `chat_stream ttft` (first body byte) and `chat_stream total` (the body
ended with `data: [DONE]`); the request event itself (`chat_stream`) is the time to response headers.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import FastHttpUser, events, task

MODEL = os.environ.get("BENCH_MODEL", "echo-1")
API_KEY = os.environ.get("BENCH_API_KEY", "demo-provider-key")
SCENARIO = os.environ.get("BENCH_SCENARIO", "chat")
RATE = float(os.environ.get("BENCH_RATE", "0") or 0)
HIST_OUT = os.environ.get("BENCH_HIST_OUT", "")

HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "Accept-Encoding": "identity",
}
MESSAGES = [{"role": "user", "content": "Say something short about load testing."}]
CHAT_BODY = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64})
STREAM_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
EMBED_BODY = json.dumps({"model": MODEL, "input": "The quick brown fox jumps over the lazy dog."})


def _bucket(us: int) -> int:
    """Round to 3 significant digits: exact below 1 ms, ≤ 0.5 % error above."""
    if us < 1000:
        return us
    scale = 10 ** (len(str(us)) - 3)
    return (us // scale) * scale


class Histograms:
    def __init__(self) -> None:
        self.hist: dict[str, dict[int, int]] = {}
        self.errors: dict[str, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.started = 0.0
        self.stopped = 0.0

    def record(self, name: str, response_time_ms: float, exception: Any) -> None:
        if exception is not None:
            self.errors[name] = self.errors.get(name, 0) + 1
            kind = f"{name}: {type(exception).__name__}: {str(exception)[:120]}"
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            return
        h = self.hist.setdefault(name, {})
        b = _bucket(int(response_time_ms * 1000))
        h[b] = h.get(b, 0) + 1

    def dump(self, path: str) -> None:
        data = {
            "started": self.started,
            "stopped": self.stopped or time.time(),
            "scenario": SCENARIO,
            "hist": {name: {str(k): v for k, v in sorted(h.items())} for name, h in self.hist.items()},
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)


HIST = Histograms()


@events.request.add_listener
def _on_request(name: str, response_time: float, exception: Any = None, **_kw: Any) -> None:
    HIST.record(name, response_time, exception)


@events.test_start.add_listener
def _on_start(**_kw: Any) -> None:
    HIST.started = time.time()


@events.test_stop.add_listener
def _on_stop(**_kw: Any) -> None:
    HIST.stopped = time.time()


@events.quitting.add_listener
def _on_quit(**_kw: Any) -> None:
    if HIST_OUT:
        HIST.dump(HIST_OUT)


class OpenAIUser(FastHttpUser):
    # Keep-alive connections, one per user; no connection pool sharing between users.
    def wait_time(self) -> float:
        return random.expovariate(RATE) if RATE > 0 else 0.0

    network_timeout = 30.0
    connection_timeout = 10.0

    def _fire(self, name: str, ms: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="SSE", name=name, response_time=ms, response_length=0, exception=exc, context={}
        )

    def chat(self) -> None:
        with self.client.post(
            "/v1/chat/completions", data=CHAT_BODY, headers=HEADERS, name="chat", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
            elif b'"usage"' not in (resp.content or b""):
                resp.failure("completion without usage")

    def embed(self) -> None:
        with self.client.post(
            "/v1/embeddings", data=EMBED_BODY, headers=HEADERS, name="embed", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")

    def stream(self) -> None:
        t0 = time.perf_counter()
        with self.client.post(
            "/v1/chat/completions",
            data=STREAM_BODY,
            headers=HEADERS,
            name="chat_stream",
            stream=True,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            raw = resp._response  # geventhttpclient response: read(1) returns once any body byte arrived
            if raw is None:
                resp.failure("no response body")
                return
            try:
                first = raw.read(1)
                ttft = (time.perf_counter() - t0) * 1000
                rest = raw.read()
                total = (time.perf_counter() - t0) * 1000
            except Exception as exc:
                resp.failure(f"stream broke: {type(exc).__name__}")
                self._fire("chat_stream total", (time.perf_counter() - t0) * 1000, exc)
                return
            body = first + rest
            if not body.rstrip().endswith(b"data: [DONE]") or b'"usage":{' not in body:
                err = RuntimeError("stream did not end with usage and [DONE]")
                resp.failure(str(err))
                self._fire("chat_stream total", total, err)
                return
            self._fire("chat_stream ttft", ttft)
            self._fire("chat_stream total", total)

    @task
    def request_once(self) -> None:
        if SCENARIO == "chat":
            self.chat()
        elif SCENARIO == "stream":
            self.stream()
        elif SCENARIO == "embed":
            self.embed()
        else:  # mix: 6 chat, 3 stream, 1 embed
            r = hash((id(self), time.perf_counter_ns())) % 10
            self.chat() if r < 6 else self.stream() if r < 9 else self.embed()
