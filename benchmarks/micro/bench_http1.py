"""Chunked body decoding on the seller client's stream path: `ChunkedDecoder` (Rust, through the facade)
vs the pure-Python decoder `gateway/h1.py` used before (kept here, verbatim in logic, as the baseline),
measured in the same run.

Run: `python benchmarks/micro/bench_http1.py` (after `maturin develop --release`).

Two shapes: one SSE event per chunk delivered alone (an upstream that flushes every token, the 2,000-stream
benchmark's case: one socket read per chunk), and 20 such chunks arriving in one read (a fast seller).
"""

from __future__ import annotations

import os
import platform
import sys
import timeit

from dragonfly.native.http1 import ChunkedDecoder

EVENT = (
    b'data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1764000000,'
    b'"model":"echo-1","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":" tok"},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
)
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)


class PyDechunker:
    """The Python decoder the gateway used before (state machine over a bytearray)."""

    def __init__(self) -> None:
        self.state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.left = 0
        self.done = False

    def decode(self, buf: bytearray) -> bytes:
        out: list[bytes] = []
        while buf and not self.done:
            if self.state == 1:
                n = min(self.left, len(buf))
                out.append(bytes(buf[:n]))
                del buf[:n]
                self.left -= n
                if self.left == 0:
                    self.state = 2
                continue
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            line = bytes(buf[:eol])
            del buf[: eol + 2]
            if self.state == 0:
                size = int(line.split(b";", 1)[0].strip(), 16)
                self.state, self.left = (3, 0) if size == 0 else (1, size)
            elif self.state == 2:
                self.state = 0
            elif not line:
                self.done = True
        return b"".join(out)


def _best(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    print(f"# {platform.machine()}, {os.cpu_count()} cpus, Python {sys.version.split()[0]}; best of 5")
    print("| delivery | Python µs | native µs | Python / native |")
    print("|---|---:|---:|---:|")
    for label, wire, n in (("1 chunk per read", CHUNK, 200_000), ("20 chunks per read", CHUNK * 20, 20_000)):
        py, native = PyDechunker(), ChunkedDecoder()
        buf = bytearray()

        def run_py(wire: bytes = wire, py: PyDechunker = py, buf: bytearray = buf) -> bytes:
            buf += wire
            return py.decode(buf)

        def run_native(wire: bytes = wire, native: ChunkedDecoder = native) -> bytes:
            return native.decode(bytes(wire))  # the gateway passes a copy of its buffer, too

        assert run_py() == run_native() == EVENT * (len(wire) // len(CHUNK))
        a, b = _best(run_py, n), _best(run_native, n)
        print(f"| {label} ({len(wire)} B) | {a:.2f} | {b:.2f} | {a / b:.1f}× |")


if __name__ == "__main__":
    main()
