"""The demo seller, exercised with the real OpenAI SDK over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from support.processes import ProcessGroup
from support.seller import start_seller_process

from dragonfly.demo import echo
from dragonfly.demo.seller import DemoSeller

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there   brave new world"},
]
# Prompt: 2 + 3 for the system message, 5 + 3 for the user message.
PROMPT_TOKENS = 13
ANSWER = "Echo: hello there brave new world"


def client(seller: DemoSeller, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=seller.base_url, api_key=api_key or seller.api_key, max_retries=0, timeout=10
    )


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def aclient(seller: DemoSeller) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=seller.base_url, api_key=seller.api_key, max_retries=0, timeout=10)


def test_models_lists_configured_models(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory(models=["echo-1", "echo-embed"])
    assert seller.base_url.startswith("http://127.0.0.1:")
    assert [m.id for m in client(seller).models.list()] == ["echo-1", "echo-embed"]


def test_non_stream_echo_with_usage(demo_seller: DemoSeller) -> None:
    resp = client(demo_seller).chat.completions.create(model="echo-1", messages=MESSAGES)
    assert resp.object == "chat.completion"
    assert resp.model == "echo-1"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == ANSWER
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (
        PROMPT_TOKENS,
        6,
        PROMPT_TOKENS + 6,
    )
    stats = demo_seller.stats
    assert (stats.requests, stats.completed, stats.concurrent) == (1, 1, 0)
    assert stats.last_request is not None and stats.last_request["messages"] == MESSAGES


def test_max_tokens_truncates_with_length(demo_seller: DemoSeller) -> None:
    resp = client(demo_seller).chat.completions.create(
        model="echo-1",
        messages=MESSAGES,
        max_tokens=3,
    )
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 3


def test_stream_one_chunk_per_word_and_usage_chunk(demo_seller: DemoSeller) -> None:
    stream = client(demo_seller).chat.completions.create(
        model="echo-1",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert pieces == ["Echo: ", "hello ", "there ", "brave ", "new ", "world"]
    assert "".join(pieces) == ANSWER
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (PROMPT_TOKENS, 6)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage(demo_seller: DemoSeller) -> None:
    chunks = list(
        client(demo_seller).chat.completions.create(
            model="echo-1",
            messages=MESSAGES,
            stream=True,
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chunks_knob_and_omit_usage(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory(chunks=50, omit_usage=True)
    chunks = list(
        client(seller).chat.completions.create(
            model="echo-1",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 50
    assert all(c.usage is None for c in chunks)
    resp = client(seller).chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "a"}])
    assert resp.usage is None


def test_wrong_key_is_authentication_error(demo_seller: DemoSeller) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(demo_seller, api_key="wrong").chat.completions.create(model="echo-1", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(demo_seller, api_key="wrong").models.list()


def test_unknown_model_is_not_found(demo_seller: DemoSeller) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(demo_seller).chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_fail_status(
    demo_seller_factory: Callable[..., DemoSeller], status: int, error: type[openai.APIStatusError]
) -> None:
    seller = demo_seller_factory(fail_status=status)
    with pytest.raises(error) as info:
        client(seller).chat.completions.create(model="echo-1", messages=MESSAGES)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["message"]
    seller.config.fail_status = None  # knobs apply to the running seller
    assert client(seller).chat.completions.create(model="echo-1", messages=MESSAGES).choices
    assert seller.stats.requests == 2


def test_drop_mid_stream_breaks_the_stream(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory(drop_mid_stream_after=3)
    received = []
    with pytest.raises(Exception) as exc:  # the SDK's exception class depends on its version
        for chunk in client(seller).chat.completions.create(
            model="echo-1",
            messages=MESSAGES,
            stream=True,
        ):
            received.append(chunk)
    # Current SDKs wrap a broken stream in APIConnectionError; releases before that let the HTTP
    # client's "incomplete chunked read" through (found by `make deps-check MODE=lowest`).
    broken = isinstance(exc.value, openai.APIConnectionError)
    assert broken or type(exc.value).__name__ == "RemoteProtocolError", exc.value
    assert len(received) == 3


def test_embeddings_deterministic(demo_seller: DemoSeller) -> None:
    c = client(demo_seller)
    first = c.embeddings.create(model="echo-1", input=["alpha beta", "gamma"])  # SDK asks for base64
    again = c.embeddings.create(model="echo-1", input="alpha beta", encoding_format="float")
    assert [len(d.embedding) for d in first.data] == [8, 8]
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert first.data[0].embedding == pytest.approx(echo.embedding("alpha beta"), abs=1e-6)
    assert first.data[0].embedding != first.data[1].embedding
    assert (first.usage.prompt_tokens, first.usage.total_tokens) == (3, 3)


async def test_max_concurrent_counts_parallel_streams() -> None:
    async with DemoSeller(chunk_delay_s=0.02, chunks=10) as seller:
        c = aclient(seller)

        async def one() -> int:
            stream = await c.chat.completions.create(
                model="echo-1",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            return len([chunk async for chunk in stream])

        counts = await asyncio.gather(*(one() for _ in range(6)))
        await c.close()
        assert counts == [12] * 6  # role + 10 content + finish
        stats = seller.stats.snapshot()
        assert (stats["requests"], stats["max_concurrent"], stats["concurrent"]) == (6, 6, 0)
        assert stats["completed"] == 6 and stats["cancelled"] == 0


async def test_client_going_away_is_counted_as_cancelled() -> None:
    async with DemoSeller(chunk_delay_s=0.05, chunks=200) as seller:
        c = aclient(seller)
        stream = await c.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            break
        await stream.close()
        await c.close()
        for _ in range(100):
            if seller.stats.cancelled:
                break
            await asyncio.sleep(0.02)
        assert seller.stats.cancelled == 1
        assert seller.stats.concurrent == 0 and seller.stats.completed == 0


def test_subprocess_seller_and_runtime_knobs(processes: ProcessGroup) -> None:
    proc, base_url = start_seller_process(processes, chunks=4, models=["m-a", "m-b"])
    base = base_url.removesuffix("/v1")
    oc = openai.OpenAI(base_url=base + "/v1", api_key="demo-provider-key", max_retries=0, timeout=10)
    assert [m.id for m in oc.models.list()] == ["m-a", "m-b"]
    chunks = list(oc.chat.completions.create(model="m-b", messages=MESSAGES, stream=True))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert http_json("GET", base + "/_stats")[1]["requests"] == 1
    status, config = http_json("POST", base + "/_config", {"fail_status": 502})
    assert (status, config["fail_status"]) == (200, 502)
    assert http_json("POST", base + "/_config", {"fail_status": 200})[0] == 400
    with pytest.raises(openai.InternalServerError):
        oc.chat.completions.create(model="m-a", messages=MESSAGES)
    assert http_json("POST", base + "/_reset")[1]["requests"] == 0
    assert proc.alive
    assert proc.stop() == 0


def test_an_assistant_prefix_is_continued_not_repeated() -> None:
    user = {"role": "user", "content": "one two three"}
    full = echo.answer([user], None)
    assert full.text == "Echo: one two three"
    rest = echo.answer([user, {"role": "assistant", "content": "Echo: one "}], None)
    assert (rest.text, rest.finish_reason) == ("two three", "stop")
    assert echo.answer([user, {"role": "assistant", "content": "Echo: one "}], 1).words == ["two"]
    # A prefix that is not the start of the answer is answered in full, as before.
    assert echo.answer([user, {"role": "assistant", "content": "Something else"}], None).text == full.text
