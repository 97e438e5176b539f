"""Request pre-parse and model substitution."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly.native.tokens import (
    InvalidInputError,
    PreParsed,
    TokenCounter,
    TokenizerError,
    preparse_request,
    substitute_model,
)

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def test_preparse_reads_all_fields() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 50,
        "n": 3,
        "dragonfly": {"profile": "cheap", "max_price": 10},
    }
    p = preparse_request(json.dumps(body).encode())
    assert isinstance(p, PreParsed)
    assert p.model == "gpt-4o-mini"
    assert (p.stream, p.include_usage, p.max_tokens, p.n, p.has_tools, p.estimated) == (
        True,
        True,
        50,
        3,
        False,
        False,
    )
    assert p.prompt_tokens == TokenCounter("o200k_base").count_chat(json.dumps(body["messages"]).encode())
    assert p.dragonfly is not None and json.loads(p.dragonfly) == body["dragonfly"]


def test_preparse_defaults() -> None:
    p = preparse_request(b'{"model": "llama-3-70b", "messages": []}')
    assert (p.stream, p.include_usage, p.max_tokens, p.n, p.has_tools, p.dragonfly) == (
        False,
        False,
        None,
        1,
        False,
        None,
    )
    assert p.estimated and p.prompt_tokens == 3


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    body = b'{"model":"gpt-4o","messages":[],"max_tokens":5,"max_completion_tokens":7}'
    assert preparse_request(body).max_tokens == 7


@pytest.mark.parametrize(("model", "published"), [("gpt-4", 105), ("gpt-4o", 101)])
def test_prompt_tokens_with_tools_match_cookbook_published_counts(model: str, published: int) -> None:
    # OpenAI cookbook "How to count tokens with tiktoken", section on tool calls: the API reports 105
    # prompt tokens for gpt-3.5-turbo / gpt-4 and 101 for gpt-4o / gpt-4o-mini.
    body = {"model": model, "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    p = preparse_request(json.dumps(body).encode())
    assert p.has_tools and p.prompt_tokens == published


def test_embeddings_input_is_counted() -> None:
    p = preparse_request(b'{"model":"text-embedding-3-small","input":["hello world", [1, 2, 3]]}')
    assert p.prompt_tokens == 2 + 3 and not p.estimated


@pytest.mark.parametrize("declared", ["o200k_base", "cl100k_base"])
def test_a_listing_declared_encoding_overrides_the_model_mapping(declared: str) -> None:
    messages = [{"role": "user", "content": "Grüße aus Köln — 東京タワー ✓ naïve café 🦀🦀"}]
    body = json.dumps({"model": "llama-3.1-70b", "messages": messages, "tools": WEATHER_TOOLS}).encode()
    mapped = preparse_request(body)
    assert (mapped.encoding, mapped.estimated) == ("o200k_base", True)
    p = preparse_request(body, declared)  # type: ignore[arg-type]
    assert (p.encoding, p.estimated) == (declared, False)
    tools_only = preparse_request(
        json.dumps({"model": "x", "messages": [], "tools": WEATHER_TOOLS}).encode(),
        declared,  # type: ignore[arg-type]
    )
    chat = TokenCounter(declared).count_chat(json.dumps(messages).encode())
    assert p.prompt_tokens == chat + tools_only.prompt_tokens - TokenCounter(declared).count_chat(b"[]")
    assert preparse_request(body, encoding=None) == mapped


def test_known_models_report_their_mapped_encoding() -> None:
    p = preparse_request(b'{"model": "gpt-4-0613", "messages": [{"role": "user", "content": "hi"}]}')
    assert (p.encoding, p.estimated) == ("cl100k_base", False)


def test_an_unknown_declared_encoding_is_a_tokenizer_error() -> None:
    with pytest.raises(TokenizerError, match="p50k_base"):
        preparse_request(b'{"messages": []}', "p50k_base")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"nope", "JSON object"),
        (b"[]", "JSON object"),
        (b'{"model": "gpt-4o", "messages": [}', "not valid JSON"),
        (b'{"model": "gpt-4o"}', "no 'messages'"),
        (b'{"messages": "hi"}', "'messages' must be an array"),
        (b'{"messages": [1]}', r"'messages\[0\]'"),
        (b'{"model": 4, "messages": []}', "'model'"),
        (b'{"messages": [], "stream": 1}', "'stream'"),
        (b'{"messages": [], "n": 0}', "'n'"),
        (b'{"messages": [], "max_tokens": 1.5}', "'max_tokens'"),
        (b'{"messages": [], "dragonfly": []}', "'dragonfly'"),
        (b'{"messages": [], "tools": {}}', "'tools'"),
    ],
)
def test_preparse_rejects_bad_bodies_naming_the_problem(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        preparse_request(body)


def test_substitute_model_replaces_model_and_drops_dragonfly_preserving_the_rest() -> None:
    body = (
        b'{"model": "alias", "seed": 123456789012345678901234567890123, "temperature": 0.70,'
        b' "dragonfly": {"profile": "x"},'
        b' "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}],'
        b' "logit_bias": {"50256": -100}, "x": 1e400}'
    )
    out = substitute_model(body, "gpt-4o-2024-08-06")
    assert out == (
        b'{"model":"gpt-4o-2024-08-06","seed":123456789012345678901234567890123,"temperature":0.70,'
        b'"messages":[{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}],'
        b'"logit_bias":{"50256": -100},"x":1e400}'
    )


def test_substitute_model_adds_a_missing_model_and_escapes_it() -> None:
    assert substitute_model(b'{"a": 1}', 'we"ird') == b'{"model":"we\\"ird","a":1}'


def test_substitute_model_rejects_non_objects() -> None:
    with pytest.raises(InvalidInputError):
        substitute_model(b"[1, 2]", "m")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    override=st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)
def test_substitute_model_is_semantically_exact(extra: dict[str, object], override: object) -> None:
    body = {"model": "alias", **extra}
    if override is not None:
        body["dragonfly"] = override
    out = json.loads(substitute_model(json.dumps(body).encode(), "upstream"))
    expected = {k: v for k, v in body.items() if k != "dragonfly"}
    expected["model"] = "upstream"
    assert out == expected
    assert list(out) == [k for k in body if k != "dragonfly"]
