"""Every native entry point, fed random input, returns or raises an ordinary exception — never a panic.

A Rust panic surfaces as `pyo3_runtime.PanicException`, a `BaseException`: each test catches only the
exceptions the call is documented to raise (`NativeError` subclasses, plus the argument-conversion errors
PyO3 raises before any Rust runs: `OverflowError` for an out-of-range integer, `UnicodeEncodeError` for a
`str` holding lone surrogates), so a panic fails the test. `test_sse_fuzz.py` covers `Splicer` and
`rewrite_completion` with random bytes; this file covers the token functions and the `Market`, and the
`Splicer` constructor and `error_event` with odd arguments, and the SQLite batch writer with any
parameter SQLite stores (round trip) or cannot (refused before any row is taken).
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dragonfly import _native
from dragonfly.native import NativeError
from dragonfly.native.market import Market
from dragonfly.native.sse import Splicer
from dragonfly.native.tokens import TokenCounter, encoding_for_model, preparse_request, substitute_model

CONVERSION = (OverflowError, UnicodeEncodeError)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "model",
                    "messages",
                    "role",
                    "content",
                    "name",
                    "tools",
                    "functions",
                    "tool_calls",
                    "function",
                    "arguments",
                    "type",
                    "text",
                    "image_url",
                    "stream",
                    "stream_options",
                    "include_usage",
                    "max_tokens",
                    "max_completion_tokens",
                    "n",
                    "input",
                    "dragonfly",
                    "parameters",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)

# Bodies shaped like chat requests, so the fuzzer reaches the counting code and not only the JSON check.
message_st = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "x"]),
        "content": json_values,
    },
    optional={"name": json_values, "tool_calls": json_values, "tool_call_id": json_values},
)
request_st = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o", "gpt-4", "llama", "", "openai/o3"]) | json_values},
    optional={
        "messages": st.lists(message_st, max_size=4) | json_values,
        "tools": json_values,
        "functions": json_values,
        "input": json_values,
        "stream": json_values,
        "stream_options": json_values,
        "max_tokens": json_values,
        "n": json_values,
        "dragonfly": json_values,
    },
)
encodings = st.none() | st.sampled_from(["o200k_base", "cl100k_base", "p50k_base", "", "O200K_BASE"])


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["o200k_base", "cl100k_base"]))
def test_count_never_panics_on_any_str(text: str, enc: str) -> None:
    assert TokenCounter(enc).count(text) >= 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_unknown_names_never_panic(name: str) -> None:
    try:
        TokenCounter(name)
    except (NativeError, *CONVERSION):
        pass
    try:
        enc, _ = encoding_for_model(name)
        assert enc in ("o200k_base", "cl100k_base")
    except CONVERSION:
        pass


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_count_chat_never_panics(raw: bytes) -> None:
    for enc in ("o200k_base", "cl100k_base"):
        try:
            assert TokenCounter(enc).count_chat(raw) >= 0
        except NativeError:
            pass


@settings(max_examples=800, deadline=None)
@given(
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | request_st.map(lambda v: json.dumps(v).encode()),
    encodings,
)
def test_preparse_never_panics(body: bytes, enc: str | None) -> None:
    try:
        p = preparse_request(body, enc)  # type: ignore[arg-type]
    except NativeError:
        return
    assert p.prompt_tokens >= 0 and p.n >= 1
    assert p.encoding in ("o200k_base", "cl100k_base")


@settings(max_examples=600, deadline=None)
@given(
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | request_st.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=20),
)
def test_substitute_model_never_panics(body: bytes, model: str) -> None:
    try:
        out = substitute_model(body, model)
    except (NativeError, *CONVERSION):
        return
    assert json.loads(out)["model"] == model


odd_text = st.text(max_size=12) | st.sampled_from(["", "\x00", "é", "🦀", "a" * 300, "gpt-4o"])
odd_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 1e308, -1.0, 5e-324])
odd_uint = st.integers(-5, 2**64 + 5) | st.sampled_from([0, 2**64 - 1, 2**63])
odd_int = st.integers(-(2**64), 2**64) | st.sampled_from([-(2**63), 2**63 - 1])

market_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"),
            st.sampled_from(["a", "b", "c", ""]) | odd_text,
            st.sampled_from(["gpt-4o", "m2"]) | odd_text,
            odd_text,
            odd_text,
            odd_uint,
            odd_uint,
            st.none() | odd_uint,
            st.none() | odd_uint,
            st.sampled_from(["active", "paused", "pending", "price_review", "suspended"]) | odd_text,
            st.sampled_from(["active", "degraded", "suspended", "pending"]) | odd_text,
            st.floats(0, 1) | odd_float,
            st.booleans(),
        ),
        st.tuples(st.just("inflight"), st.sampled_from(["a", "b", "c"]) | odd_text, odd_uint),
        st.tuples(
            st.just("record"),
            st.sampled_from(["a", "b", "c"]) | odd_text,
            st.booleans(),
            st.none() | odd_float,
            st.none() | odd_float,
            odd_int,
        ),
        st.tuples(st.just("ttft_floor"), st.sampled_from(["a", "b", "c"]) | odd_text, odd_float),
        st.tuples(st.just("remove"), st.sampled_from(["a", "b", "c"]) | odd_text),
        st.tuples(
            st.just("profile"),
            st.sampled_from(["p", "q"]),
            st.sampled_from(["cost_first", "balanced", "reliability_first", "quality_first", "custom"])
            | odd_text,
            st.none() | st.dictionaries(st.sampled_from(["price", "latency", "quality", "ttft"]), odd_float),
            st.none() | st.lists(odd_text, max_size=3),
            st.none() | st.lists(odd_text, max_size=3),
            st.none() | odd_uint,
            st.none() | odd_float,
        ),
        st.tuples(
            st.just("strategy"),
            st.sampled_from(["cost_first", "custom"]) | odd_text,
            st.dictionaries(
                st.sampled_from(["price", "latency", "reliability", "ttft"]), odd_float, max_size=3
            ),
        ),
        st.tuples(st.just("remove_profile"), st.sampled_from(["p", "q"]) | odd_text),
    ),
    max_size=25,
)


@settings(max_examples=500, deadline=None)
@given(market_ops, odd_int, odd_uint, st.integers(0, 2**64 + 1) | st.just(-1))
def test_market_never_panics(ops: list[tuple[object, ...]], now_ms: int, seed: int, limit: int) -> None:
    m = Market()
    for op in ops:
        kind, *args = op
        try:
            if kind == "upsert":
                m.upsert_listing(*args)  # type: ignore[arg-type]
            elif kind == "inflight":
                m.set_inflight(*args)  # type: ignore[arg-type]
            elif kind == "record":
                m.record_result(*args)  # type: ignore[arg-type]
            elif kind == "ttft_floor":
                m.record_ttft_floor(*args)  # type: ignore[arg-type]
            elif kind == "remove":
                m.remove_listing(*args)  # type: ignore[arg-type]
            elif kind == "profile":
                pid, strategy, weights, allow, deny, max_in, max_ttft = args
                m.set_profile(
                    pid,  # type: ignore[arg-type]
                    strategy,  # type: ignore[arg-type]
                    weights=weights,  # type: ignore[arg-type]
                    providers_allow=allow,  # type: ignore[arg-type]
                    providers_deny=deny,  # type: ignore[arg-type]
                    sellers_deny=deny,  # type: ignore[arg-type]
                    max_input_price=max_in,  # type: ignore[arg-type]
                    max_output_price=max_in,  # type: ignore[arg-type]
                    max_ttft_ms=max_ttft,  # type: ignore[arg-type]
                    min_throughput_tps=max_ttft,  # type: ignore[arg-type]
                )
            elif kind == "strategy":
                m.set_strategy_weights(*args)  # type: ignore[arg-type]
                assert all(math.isfinite(v) for v in m.strategy_weights(args[0]).values())  # type: ignore[arg-type]
            elif kind == "remove_profile":
                m.remove_profile(*args)  # type: ignore[arg-type]
        except (NativeError, *CONVERSION):
            pass
    for model in ("gpt-4o", "m2", ""):
        for pid in ("p", "q"):
            try:
                ranked = m.rank(model, pid, now_ms, seed, limit)
                rows = m.explain(model, pid, now_ms, seed)
            except (NativeError, *CONVERSION):
                continue
            assert len(ranked) == len(set(ranked))
            assert all(math.isfinite(r["score"]) for r in rows)  # type: ignore[arg-type]
            in_rank_order = [r["listing_id"] for r in rows if r["rank"] is not None]
            assert ranked == in_rank_order[: len(ranked)]
    assert len(m) >= 0


@settings(max_examples=300, deadline=None)
@given(odd_text, odd_text, st.booleans(), odd_int, odd_uint, encodings, odd_text, st.none() | odd_text)
def test_splicer_constructor_and_error_event_never_panic(
    rid: str,
    model: str,
    usage: bool,
    created: int,
    max_event: int,
    enc: str | None,
    msg: str,
    code: str | None,
) -> None:
    try:
        s = Splicer(rid, model, usage, created, max_event, enc or "o200k_base")
    except (NativeError, *CONVERSION):
        return
    try:
        out = s.error_event(msg, code)
    except CONVERSION:
        return
    assert out.endswith(b"data: [DONE]\n\n")
    assert json.loads(out.split(b"\n\n")[0][len(b"data: ") :])["id"] == rid


_PARAM = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    st.binary(),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_PARAM, _PARAM), max_size=20))
def test_sqlite_batch_round_trips_any_parameters(rows: list[tuple[object, object]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/f.sqlite"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (a, b)")
        writer = _native.SqliteBatchWriter(path, 1000)
        batch = _native.SqliteBatch()
        batch.add("INSERT INTO t (a, b) VALUES (?1, ?2)", rows)
        writer.write(batch)
        writer.close()
        assert conn.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == rows
        conn.close()


@given(
    bad=st.one_of(
        st.integers(min_value=2**63),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(), st.text()),
    )
)
def test_sqlite_batch_refuses_what_sqlite_cannot_store(bad: object) -> None:
    batch = _native.SqliteBatch()
    with pytest.raises((TypeError, OverflowError)):
        batch.add("INSERT INTO t (a) VALUES (?1)", [(bad,)])
    assert batch.values == 0


def test_every_native_callable_is_fuzzed() -> None:
    # A new `#[pyfunction]`/`#[pyclass]` must get a fuzz test here or in test_sse_fuzz.py.
    fuzzed = {
        "Splicer",
        "rewrite_completion",
        "TokenCounter",
        "encoding_for_model",
        "preparse_request",
        "substitute_model",
        "Market",
        "ChunkedDecoder",
        "SqliteBatch",
        "SqliteBatchWriter",
    }
    exported = {n for n in _native.__all__ if not n.endswith("Error")}
    assert exported == fuzzed
