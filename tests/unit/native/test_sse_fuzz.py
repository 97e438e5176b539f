"""Random bytes never crash the native stream code: success or a `NativeError`, never a panic."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly import _native
from dragonfly.native.sse import NativeError, Splicer, rewrite_completion

# Bytes that steer the fuzzer into SSE/JSON territory as well as pure noise.
sse_ish = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [
                b"data: ",
                b"data:",
                b"\r",
                b"\n",
                b"\r\n",
                b":",
                b"event: error\n",
                b"[DONE]",
                b"{",
                b"}",
                b"[",
                b"]",
                b'"id":',
                b'"model":',
                b'"choices":[',
                b'"usage":',
                b'"\\u0069d"',
                b"\\",
                b'"',
                b"\xef\xbb\xbf",
                b"\xff",
                b"99999999999999999999999999",
                b"null",
                b",",
                b'{"index":0,"delta":{"content":"x"}}',
            ]
        ),
    ),
    max_size=60,
).map(b"".join)


def test_panic_exception_is_not_a_native_error() -> None:
    # The guard below relies on this: a Rust panic surfaces as `pyo3_runtime.PanicException`
    # (a BaseException), which `except NativeError` would not catch.
    assert not issubclass(BaseException, NativeError)
    assert issubclass(_native.EventTooLargeError, NativeError)


@settings(max_examples=1500, deadline=None)
@given(sse_ish, st.lists(st.integers(0, 3000), max_size=6), st.integers(1, 200), st.booleans())
def test_feed_and_finish_never_panic(data: bytes, points: list[int], max_event: int, usage: bool) -> None:
    s = Splicer("r", "m", usage, 0, max_event)
    bounds = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    for a, b in itertools.pairwise(bounds):
        try:
            s.feed(data[a:b])
        except NativeError:
            break
    try:
        s.begin_continuation()
        s.feed(data)
    except NativeError:
        pass
    out = s.error_event("x", None) if s.saw_done else s.finish()
    assert out.endswith(b"data: [DONE]\n\n")
    # Every property is readable, whatever the state.
    _ = (
        s.usage,
        s.usage_json,
        s.usage_source,
        s.counted_completion_tokens,
        s.finish_reason,
        s.content_so_far,
    )
    _ = (s.reasoning_so_far, s.tool_calls, s.tool_call_open, s.upstream_error, s.events, s.garbage_events)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(sse_ish, st.binary(max_size=200)))
def test_rewrite_completion_never_panics(body: bytes) -> None:
    try:
        got = rewrite_completion(body, "r", "m")
    except NativeError:
        return
    assert isinstance(json.loads(got["body"]), dict)


@settings(max_examples=500, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "id",
                        "model",
                        "choices",
                        "usage",
                        "delta",
                        "content",
                        "index",
                        "tool_calls",
                        "function",
                        "arguments",
                        "error",
                        "x_groq",
                        "message",
                        "a",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_structured_json_of_any_shape_never_panics(value: object) -> None:
    raw = json.dumps(value).encode()
    s = Splicer("r", "m", True, 0)
    s.feed(b"data: " + raw + b"\n\n")
    assert s.finish().endswith(b"data: [DONE]\n\n")
    try:
        got = rewrite_completion(raw, "r", "m")
    except NativeError:
        assert not isinstance(value, dict)
        return
    assert isinstance(value, dict)
    want = dict(value)
    for k in ("id", "model"):
        if k in want:
            want[k] = {"id": "r", "model": "m"}[k]
    assert json.loads(got["body"]) == want
