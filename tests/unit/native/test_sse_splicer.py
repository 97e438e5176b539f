"""The splicer gives the same buyer stream and the same captured state for every way of cutting the input."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dragonfly.native.sse import EventTooLargeError, Splicer

MAX_EVENT = 1 << 20


def _fixtures_dir() -> Path:
    env = os.environ.get("DRAGONFLY_FIXTURES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared/fixtures/upstream"


def _recorded() -> list[Path]:
    d = _fixtures_dir()
    return sorted(d.glob("*.sse")) if d.is_dir() else []


def splice(
    chunks: list[bytes], *, include_usage: bool = True, max_event_bytes: int = MAX_EVENT
) -> tuple[bytes, tuple[Any, ...]]:
    """Feed `chunks`, end the stream (or error it out on an oversized event), return output and state."""
    s = Splicer("req-9", "public/model", include_usage, 1700000000, max_event_bytes)
    s.set_prompt_tokens(11)
    out = bytearray()
    for c in chunks:
        try:
            out += s.feed(c)
        except EventTooLargeError:
            out += s.error_event("event too large", "event_too_large")
            break
    out += s.finish()
    state = (
        s.usage,
        s.usage_source,
        s.finish_reason,
        s.content_so_far,
        s.reasoning_so_far,
        s.tool_calls,
        s.tool_call_open,
        s.upstream_error,
        s.saw_done,
        s.events,
        s.garbage_events,
        s.counted_completion_tokens,
        s.bytes_out,
    )
    assert s.bytes_out == len(out)
    return bytes(out), state


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def events(out: bytes) -> list[str]:
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b"data: [DONE]") == 1
    assert b"\r" not in out
    result = []
    for block in out.decode().split("\n\n")[:-1]:
        if block.startswith(":"):
            continue
        assert all(line.startswith("data: ") for line in block.split("\n")), block
        result.append("\n".join(line[6:] for line in block.split("\n")))
    return result


def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> str:
    body = {"id": "up", "object": "chat.completion.chunk", "created": 1, "model": "up/m", **top}
    body.setdefault("choices", [{"index": 0, "delta": delta, "finish_reason": finish}])
    return json.dumps(body, ensure_ascii=False)


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
line_end = st.sampled_from(["\n", "\r\n", "\r"])
piece = st.one_of(
    text.map(lambda t: f"data: {chunk({'content': t})}"),
    text.map(lambda t: f"data: {chunk({'reasoning_content': t})}"),
    st.tuples(st.integers(0, 1), text).map(
        lambda a: f"data: {chunk({'tool_calls': [{'index': a[0], 'function': {'arguments': a[1]}}]})}"
    ),
    st.sampled_from(["stop", "length", "tool_calls"]).map(lambda f: f"data: {chunk({}, f)}"),
    st.integers(0, 2**70).map(
        lambda n: (
            "data: "
            + chunk(
                {}, choices=[], usage={"prompt_tokens": 3, "completion_tokens": n % 1000, "total_tokens": n}
            )
        )
    ),
    text.map(lambda t: f": keep-alive {t}"),
    text.map(lambda t: f"data: garbage {{{t}"),
    st.just('data: {"id":"a",\ndata: "model":"b","choices":[]}'),
    st.just("id: 42\nretry: 1000\nevent: message\ndata: " + chunk({"content": "x"})),
    st.just('event: error\ndata: {"error":{"message":"upstream broke","code":400}}'),
    st.just("data: [DONE]"),
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.tuples(piece, line_end, line_end), max_size=12))
    body = "".join(p.replace("\n", a) + a + b for p, a, b in parts)
    if draw(st.booleans()):
        body = body.rstrip("\r\n")
    return body.encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
def test_generated_streams_splice_identically_for_any_split(
    data: bytes, points: list[int], usage: bool
) -> None:
    whole = splice([data], include_usage=usage)
    assert splice(cut(data, points), include_usage=usage) == whole
    events(whole[0])


@settings(max_examples=200)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6), st.integers(1, 64))
def test_arbitrary_bytes_splice_identically_even_when_events_are_too_large(
    data: bytes, points: list[int], max_event: int
) -> None:
    whole = splice([data], max_event_bytes=max_event)
    assert splice(cut(data, points), max_event_bytes=max_event) == whole
    assert whole[0].endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.name)
@settings(max_examples=25, deadline=None)
@given(points=st.lists(st.integers(0, 200_000), min_size=1, max_size=30))
def test_recorded_streams_splice_identically_for_random_splits(path: Path, points: list[int]) -> None:
    data = path.read_bytes()
    assert splice(cut(data, points)) == splice([data])


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.name)
def test_recorded_streams_splice_identically_byte_by_byte(path: Path) -> None:
    data = path.read_bytes()
    whole = splice([data], include_usage=False)
    assert splice([data[i : i + 1] for i in range(len(data))], include_usage=False) == whole


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
@pytest.mark.parametrize(
    "path",
    [p for p in _recorded() if not p.name.startswith("google_gemini_native")][:8],
    ids=lambda p: p.name,
)
def test_crlf_and_cr_framing_give_the_lf_framed_result_byte_by_byte(path: Path, ending: str) -> None:
    text = path.read_bytes().decode().replace("\r\n", "\n").replace("\r", "\n")
    # Multi-line data too: split each JSON event after its first comma into two `data:` lines.
    text = text.replace('data: {"id":', 'data: {\ndata: "id":')
    lf = splice([text.encode()])
    data = text.replace("\n", ending).encode()
    assert splice([data[i : i + 1] for i in range(len(data))]) == lf
    assert lf[1][3] or lf[1][5] or lf[1][6] or lf[1][7]  # something was captured


def test_usage_is_injected_before_done_when_asked_and_upstream_sent_none() -> None:
    data = (
        f"data: {chunk({'content': 'Hello there, friend'})}\n\ndata: {chunk({}, 'stop')}\n\ndata: [DONE]\n\n"
    )
    out, state = splice([data.encode()])
    evs = events(out)
    assert evs[-1] == "[DONE]"
    injected = json.loads(evs[-2])
    assert injected == {
        "id": "req-9",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "public/model",
        "choices": [],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": injected["usage"]["completion_tokens"],
            "total_tokens": 11 + injected["usage"]["completion_tokens"],
        },
        "dragonfly": {"usage_source": "counted"},
    }
    assert injected["usage"]["completion_tokens"] == state[11] == 4  # "Hello there, friend" in o200k_base
    assert state[1] == "counted"
    # Not asked: nothing injected.
    out, _ = splice([data.encode()], include_usage=False)
    assert "usage" not in "".join(events(out))


def test_usage_only_chunk_is_dropped_when_not_asked_but_still_captured() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    data = (
        f"data: {chunk({'content': 'hi'})}\n\ndata: {chunk({}, choices=[], usage=usage)}\n\ndata: [DONE]\n\n"
    )
    out, state = splice([data.encode()], include_usage=False)
    assert len(events(out)) == 2
    assert state[0] == {**usage, "cached_tokens": 0, "reasoning_tokens": 0}
    assert state[1] == "upstream"
    out, _ = splice([data.encode()], include_usage=True)
    assert json.loads(events(out)[1])["usage"] == usage


def test_error_event_ends_the_stream_in_the_openai_error_shape() -> None:
    """The bytes of the event that the SDK raises as `openai.APIError`; the SDK itself is driven through a
    running gateway in tests/e2e/test_chat_openai_sdk.py."""
    s = Splicer("req-1", "pub", False, 5)
    body = s.feed(f"data: {chunk({'content': 'partial'})}\n\n".encode())
    body += s.error_event("seller disconnected", "upstream_disconnect")
    assert s.finish() == b""
    evs = events(body)
    first = json.loads(evs[0])
    assert (first["id"], first["model"], first["choices"][0]["delta"]["content"]) == (
        "req-1",
        "pub",
        "partial",
    )
    err = json.loads(evs[1])
    assert err["choices"] == [{"index": 0, "delta": {}, "finish_reason": "error"}]
    assert err["error"] == {
        "message": "seller disconnected",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_disconnect",
    }
