"""Token counts are tiktoken's, token for token, for o200k_base and cl100k_base."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly.native.tokens import InvalidInputError, TokenCounter, TokenizerError, encoding_for_model

SAMPLES = {
    "ascii": "Hello, world! The quick brown fox jumps over the lazy dog. It's 12345 o'clock, isn't it?",
    "cjk": "東京は日本の首都です。我们今天去公园散步。안녕하세요, 만나서 반갑습니다.",
    "emoji": "🎉🎉 party 👩‍👩‍👧‍👦 family 🇯🇵 flag ❤️‍🔥",
    "code": "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tif x != None:\n\t\tprint(x)\r\n",
    "whitespace": "a" + " " * 300 + "b\n\n\n   \n\t\t  \r\n" + " " * 1000,
    "trailing_ws": "end with spaces   ",
    "single_word": "a" * 5000,
    "digits": "3.14159265358979323846264338327950288419716939937510",
    "specials_as_text": "<|endoftext|> and <|endofprompt|> are plain text here",
    "contractions": "I'LL WE'RE they'Ve He's ABC'S Don't",
    "mixed_scripts": "Ελληνικά русский العربية हिन्दी ไทย",
    "empty": "",
}


@pytest.mark.parametrize("sample", SAMPLES, ids=list(SAMPLES))
def test_count_equals_tiktoken_on_input_classes(tiktoken_for, encoding_name: str, sample: str) -> None:
    text = SAMPLES[sample]
    expected = len(tiktoken_for(encoding_name).encode_ordinary(text))
    assert TokenCounter(encoding_name).count(text) == expected


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=300))
def test_count_equals_tiktoken_on_random_text(tiktoken_for, text: str) -> None:
    for name in ("o200k_base", "cl100k_base"):
        assert TokenCounter(name).count(text) == len(tiktoken_for(name).encode_ordinary(text)), name


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(" \t\n\r\u00a0\u3000aZ9'!é東😀"), max_size=80))
def test_count_equals_tiktoken_on_whitespace_heavy_text(tiktoken_for, text: str) -> None:
    for name in ("o200k_base", "cl100k_base"):
        assert TokenCounter(name).count(text) == len(tiktoken_for(name).encode_ordinary(text)), name


@pytest.mark.parametrize(
    "text",
    ["a\ud800b", "\udfff", "x\ud83d\ude00y", "\ude00\ud83d", "ok \ud800\ud800 ok"],
    ids=["lone-high", "lone-low", "split-pair", "reversed-pair", "two-lone"],
)
def test_lone_surrogates_are_counted_as_tiktoken_counts_them(
    tiktoken_for, encoding_name: str, text: str
) -> None:
    # tiktoken round-trips such a str through UTF-16 ("surrogatepass" / "replace"): a lone surrogate
    # becomes U+FFFD and a surrogate pair held as two code points becomes the character. So do we.
    expected = len(tiktoken_for(encoding_name).encode(text, disallowed_special=()))
    assert TokenCounter(encoding_name).count(text) == expected


def test_large_input_counts_without_holding_the_gil_correctly(tiktoken_for, encoding_name: str) -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2000
    assert TokenCounter(encoding_name).count(text) == len(tiktoken_for(encoding_name).encode_ordinary(text))


def test_unknown_encoding_is_a_tokenizer_error() -> None:
    with pytest.raises(TokenizerError, match="p50k_base"):
        TokenCounter("p50k_base")


def test_counter_reports_its_encoding(encoding_name: str) -> None:
    assert TokenCounter(encoding_name).encoding == encoding_name


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", ("o200k_base", False)),
        ("gpt-4o-mini", ("o200k_base", False)),
        ("gpt-4.1", ("o200k_base", False)),
        ("gpt-5-mini", ("o200k_base", False)),
        ("o1", ("o200k_base", False)),
        ("o3-mini", ("o200k_base", False)),
        ("o4-mini", ("o200k_base", False)),
        ("gpt-4", ("cl100k_base", False)),
        ("gpt-4-turbo", ("cl100k_base", False)),
        ("gpt-3.5-turbo", ("cl100k_base", False)),
        ("text-embedding-3-large", ("cl100k_base", False)),
        ("text-embedding-ada-002", ("cl100k_base", False)),
        ("mistral-large", ("o200k_base", True)),
    ],
)
def test_encoding_for_model(model: str, expected: tuple[str, bool]) -> None:
    assert encoding_for_model(model) == expected


# --- chat accounting -----------------------------------------------------------------------------------

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("encoding", "published"),
    [("cl100k_base", 129), ("o200k_base", 124)],
)
def test_count_chat_matches_cookbook_published_api_counts(encoding: str, published: int) -> None:
    # OpenAI cookbook "How to count tokens with tiktoken": usage.prompt_tokens reported by the API for
    # these messages is 129 (gpt-3.5-turbo, gpt-4) and 124 (gpt-4o, gpt-4o-mini).
    assert TokenCounter(encoding).count_chat(json.dumps(COOKBOOK_MESSAGES).encode()) == published


def _reference_chat_count(tiktoken_for, encoding_name: str, messages: list[dict[str, str]]) -> int:
    enc = tiktoken_for(encoding_name)
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(enc.encode_ordinary(value)) + (1 if key == "name" else 0)
    return total


message_st = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=60)},
    optional={"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(message_st, max_size=6))
def test_count_chat_follows_cookbook_formula(tiktoken_for, messages: list[dict[str, str]]) -> None:
    body = json.dumps(messages).encode()
    for name in ("o200k_base", "cl100k_base"):
        assert TokenCounter(name).count_chat(body) == _reference_chat_count(tiktoken_for, name, messages)


def test_count_chat_text_parts_count_like_a_string(tiktoken_for, encoding_name: str) -> None:
    counter = TokenCounter(encoding_name)
    as_string = [{"role": "user", "content": "hello there, world"}]
    as_parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello there,"}, {"type": "text", "text": " world"}],
        }
    ]
    plain = counter.count_chat(json.dumps(as_string).encode())
    parts = counter.count_chat(json.dumps(as_parts).encode())
    enc = tiktoken_for(encoding_name)
    split_extra = len(enc.encode_ordinary("hello there,")) + len(enc.encode_ordinary(" world"))
    assert parts - plain == split_extra - len(enc.encode_ordinary("hello there, world"))


def test_count_chat_counts_tool_call_name_and_arguments(tiktoken_for, encoding_name: str) -> None:
    enc = tiktoken_for(encoding_name)
    args = json.dumps({"location": "Paris", "unit": "celsius"})
    msgs = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    expected = (
        3
        + 3
        + len(enc.encode_ordinary("assistant"))
        + len(enc.encode_ordinary("get_weather"))
        + len(enc.encode_ordinary(args))
        + 3
        + sum(len(enc.encode_ordinary(s)) for s in ("tool", "call_1", "18C"))
    )
    assert TokenCounter(encoding_name).count_chat(json.dumps(msgs).encode()) == expected


@pytest.mark.parametrize(
    ("body", "needle"),
    [(b"{", "not valid JSON"), (b"{}", "must be an array"), (b'[{"role": "user"}, 3]', r"messages\[1\]")],
)
def test_count_chat_rejects_malformed_messages(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        TokenCounter("o200k_base").count_chat(body)
