"""Large inputs are processed with the GIL released: another Python thread keeps running meanwhile.

A background thread ticks every millisecond (`time.sleep(0.001)`, so it needs the GIL only briefly and
hardly any CPU). While the main thread is inside a native call that holds the GIL the ticker is stuck —
at most one tick sneaks in when the call returns (the interpreter hands the GIL over on a pending drop
request); when the call detaches, the ticker keeps ticking through it. Each call takes tens of
milliseconds and is retried a few times, so a scheduler hiccup on a busy machine does not fail the test.
Checked against `json.loads` (holds the GIL: the same measure stays at ≤ 1 tick).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dragonfly.native.sse import Splicer, rewrite_completion
from dragonfly.native.tokens import TokenCounter, preparse_request


@pytest.fixture
def ticks() -> Iterator[Callable[[], int]]:
    state = {"n": 0, "stop": False}

    def spin() -> None:
        while not state["stop"]:
            time.sleep(0.001)
            state["n"] += 1

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        yield lambda: state["n"]
    finally:
        state["stop"] = True
        t.join()


# The ticker moved during a call when it advanced this many ticks (1 ms each) or more.
MOVED_TICKS = 4


def _ticks_per_call(ticks: Callable[[], int], call: Callable[[], object]) -> Iterator[int]:
    """How far the ticker advanced during each of up to five calls (made lazily, one per value taken)."""
    for _ in range(5):
        before = ticks()
        call()
        yield ticks() - before


def moved_while_running(ticks: Callable[[], int], call: Callable[[], object]) -> bool:
    """Whether the ticker moved during one of up to five calls."""
    return any(n >= MOVED_TICKS for n in _ticks_per_call(ticks, call))


def stuck_while_running(ticks: Callable[[], int], call: Callable[[], object]) -> bool:
    """Whether the ticker stayed stuck during one of up to five calls: the control's measure, as tolerant
    of a busy machine as `moved_while_running` (under pytest-xdist a single attempt once saw the ticker
    move through `json.loads`, and that failed the test)."""
    return any(n < MOVED_TICKS for n in _ticks_per_call(ticks, call))


def test_the_measure_sees_a_call_that_holds_the_gil(ticks: Callable[[], int]) -> None:
    big = json.dumps(["x" * 50] * 400_000)
    assert stuck_while_running(ticks, lambda: json.loads(big))


def big_stream() -> bytes:
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "Lorem ipsum dolor sit"}, "finish_reason": None}],
    }
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for _ in range(20_000))


def test_splicer_feed_releases_the_gil_for_large_chunks(ticks: Callable[[], int]) -> None:
    data = big_stream()

    def feed() -> None:
        s = Splicer("r", "m", True, 0)
        assert s.feed(data)
        assert s.events == 20_000

    assert moved_while_running(ticks, feed)


def test_rewrite_completion_releases_the_gil_for_large_bodies(ticks: Callable[[], int]) -> None:
    body = json.dumps(
        {"id": "x", "model": "m", "choices": [{"index": 0, "message": {"content": "Lorem ipsum " * 200_000}}]}
    ).encode()
    assert moved_while_running(ticks, lambda: rewrite_completion(body, "r", "m"))


def test_counting_and_preparse_release_the_gil_for_large_inputs(ticks: Callable[[], int]) -> None:
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. 東京 " * 40_000
    assert moved_while_running(ticks, lambda: TokenCounter("o200k_base").count(text))
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()
    assert moved_while_running(ticks, lambda: preparse_request(body))


LOAD_SCRIPT = """
import threading, time
from dragonfly.native.tokens import load_encoding
n = [0]; stop = [False]
def spin():
    while not stop[0]:
        time.sleep(0.001); n[0] += 1
t = threading.Thread(target=spin, daemon=True); t.start(); time.sleep(0.01)
before = n[0]; t0 = time.perf_counter()
load_encoding("o200k_base")
print((time.perf_counter() - t0) * 1000, n[0] - before)
stop[0] = True
"""


def test_loading_an_encoding_releases_the_gil() -> None:
    # Loading happens once per process, so each attempt is a fresh interpreter. The load takes tens of
    # milliseconds; a ticker stuck behind a held GIL would not move at all.
    import subprocess
    import sys

    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        ms, moved = float(out[0]), int(out[1])
        if ms >= 15 and moved >= 4:
            return
    pytest.fail(f"the ticker moved {moved} times during a {ms:.0f} ms load")
