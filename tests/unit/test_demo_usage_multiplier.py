"""The demo seller's `usage_multiplier` knob: an over-reporting seller, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable

import openai
from openai.types.chat import ChatCompletionMessageParam
from test_demo_seller import client, http_json

from dragonfly.demo.seller import DemoSeller

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three"}]


def test_reported_usage_is_multiplied_everywhere(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory()
    oc = client(seller)
    honest = oc.chat.completions.create(model="echo-1", messages=MESSAGES).usage
    assert honest is not None

    seller.config.usage_multiplier = 10  # changed while it runs, as e2e tests do after admission
    body = oc.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert body.usage is not None
    assert (body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens) == (
        honest.prompt_tokens * 10,
        honest.completion_tokens * 10,
        honest.total_tokens * 10,
    )
    assert body.choices[0].message.content == "Echo: one two three"  # the answer itself is unchanged

    chunks = list(
        oc.chat.completions.create(
            model="echo-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == honest.completion_tokens * 10

    emb = oc.embeddings.create(model="echo-1", input="a b c d")
    assert emb.usage.prompt_tokens == 40


def test_usage_multiplier_is_validated(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory()
    base = seller.base_url.removesuffix("/v1")
    assert http_json("POST", base + "/_config", {"usage_multiplier": -1})[0] == 400
    assert http_json("POST", base + "/_config", {"usage_multiplier": True})[0] == 400
    assert http_json("POST", base + "/_config", {"usage_multiplier": "x"})[0] == 400
    status, config = http_json("POST", base + "/_config", {"usage_multiplier": 2.5})
    assert (status, config["usage_multiplier"]) == (200, 2.5)
    resp = client(seller).chat.completions.create(model="echo-1", messages=MESSAGES)
    assert resp.usage is not None and resp.usage.completion_tokens == round(4 * 2.5)
    assert isinstance(resp, openai.types.chat.ChatCompletion)


def test_prompt_only_inflation_and_a_claimed_cache(demo_seller_factory: Callable[..., DemoSeller]) -> None:
    seller = demo_seller_factory()
    oc = client(seller)
    honest = oc.chat.completions.create(model="echo-1", messages=MESSAGES).usage
    assert honest is not None and honest.prompt_tokens_details is None

    seller.config.update({"prompt_usage_multiplier": 3, "reported_cached_tokens": 5})
    for stream in (False, True):
        if stream:
            chunks = list(
                oc.chat.completions.create(
                    model="echo-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )
            usage = chunks[-1].usage
        else:
            usage = oc.chat.completions.create(model="echo-1", messages=MESSAGES).usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            3 * honest.prompt_tokens,
            honest.completion_tokens,
        )
        assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 5

    base = seller.base_url.removesuffix("/v1")
    for bad in (
        {"prompt_usage_multiplier": -1},
        {"reported_cached_tokens": 1.5},
        {"reported_cached_tokens": -1},
    ):
        assert http_json("POST", base + "/_config", bad)[0] == 400
    assert http_json("POST", base + "/_config", {"prompt_usage_multiplier": None})[0] == 200
