"""The paired A/B benchmark (benchmarks/load/paired.py): every target gets the same requests in the same
seconds, CPU is read in nanoseconds, and a ratio is called "within noise" only when its interval holds 1.0.
The lanes are driven against real HTTP servers on loopback."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load.paired import (  # noqa: E402
    Block,
    Lanes,
    bootstrap_mean_ci,
    ratios,
    summarise,
    tree_cpu_ns,
)
from benchmarks.load.targets import Target  # noqa: E402


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Type") != "application/json" or "Bearer k-" not in self.headers.get(
            "Authorization", ""
        ):
            self.send_response(400)
        else:
            self.send_response(self.status)
        payload = b'{"ok": true}'
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Failing(_Answer):
    status = 503


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[Target]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield Target(f"t{port}", f"http://127.0.0.1:{port}", f"k-{port}", {"chat": "m"}, [])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ok_a() -> Iterator[Target]:
    yield from _serve(_Answer)


@pytest.fixture
def ok_b() -> Iterator[Target]:
    yield from _serve(_Answer)


@pytest.fixture
def failing() -> Iterator[Target]:
    yield from _serve(_Failing)


def _run(lanes: Lanes, until: int) -> None:
    lanes.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ok, errors = lanes.totals()
        if min(a + b for a, b in zip(ok, errors, strict=True)) >= until:
            break
        time.sleep(0.02)
    lanes.stop()


def test_every_target_gets_the_same_number_of_requests(ok_a: Target, ok_b: Target) -> None:
    lanes = Lanes([ok_a, ok_b], "chat", 3)
    _run(lanes, 60)
    ok, errors = lanes.totals()
    assert lanes.failure is None
    assert errors == [0, 0]
    # each lane sends to both in turn and stops between requests, so they differ by at most one per lane
    assert ok[0] >= 60 and abs(ok[0] - ok[1]) <= 3


def test_an_answer_that_is_not_200_is_counted_as_an_error(ok_a: Target, failing: Target) -> None:
    lanes = Lanes([ok_a, failing], "stream", 2)
    _run(lanes, 20)
    ok, errors = lanes.totals()
    assert ok[1] == 0 and errors[1] >= 20
    assert errors[0] == 0 and ok[0] >= 20


def test_a_target_that_goes_away_ends_the_lanes_with_the_reason(ok_a: Target) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    port = server.server_address[1]
    gone = Target("gone", f"http://127.0.0.1:{port}", "k-gone", {"chat": "m"}, [])
    server.server_close()  # nothing listens: the lane cannot connect
    lanes = Lanes([ok_a, gone], "chat", 1).start()
    time.sleep(0.3)
    lanes.stop()
    assert isinstance(lanes.failure, ConnectionError)


def test_the_interval_is_seeded_and_holds_the_mean() -> None:
    xs = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0]
    assert bootstrap_mean_ci(xs) == bootstrap_mean_ci(xs)
    lo, hi = bootstrap_mean_ci(xs)
    assert lo < sum(xs) / len(xs) < hi
    s = summarise(xs)
    assert s["holds_1"] and s["n"] == 8 and 0 < s["resolution_pct"] < 2


def test_a_clear_difference_is_not_called_noise() -> None:
    s = summarise([1.05, 1.06, 1.04, 1.05, 1.07, 1.05, 1.06, 1.04])
    assert not s["holds_1"]
    assert s["ci95"][0] > 1.03


def test_ratios_are_paired_within_each_block() -> None:
    names = ["relay", "baseline@abc1234", "head", "head-aa"]
    # the machine slows down 2x in the second block: paired, the ratio does not move
    blocks = [
        Block(5.0, [1000] * 4, [0] * 4, [200_000_000, 500_000_000, 550_000_000, 500_000_000], [1, 2, 2, 2]),
        Block(
            5.0, [1000] * 4, [0] * 4, [400_000_000, 1000_000_000, 1100_000_000, 1000_000_000], [1, 2, 2, 2]
        ),
    ]
    r = ratios(names, blocks)
    assert r["head / baseline"]["cpu"]["mean"] == pytest.approx(1.1)
    assert r["head / baseline"]["cpu"]["min"] == pytest.approx(1.1)
    # above the relay: (550 - 200) / (500 - 200)
    assert r["head / baseline"]["cpu_above_relay"]["mean"] == pytest.approx(350 / 300)
    assert r["head-aa / head (A/A)"]["cpu"]["mean"] == pytest.approx(500 / 550)
    assert r["head / baseline"]["cpu_main"]["mean"] == pytest.approx(1.0)


def test_cpu_is_read_in_nanoseconds_and_the_main_thread_is_a_part() -> None:
    import os

    before, main_before = tree_cpu_ns(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:  # burn 50 ms on this (the main) thread
        pass
    after, main_after = tree_cpu_ns(os.getpid())
    assert main_after - main_before >= 40_000_000
    assert after - before >= main_after - main_before
    assert 0 < main_after <= after
