"""HTTP/1.1 on a bare socket, for tests that send what no client library would (request smuggling, header
abuse, stalled bodies): the bytes go out as given, every answer is read back until the server closes the
connection, and the answers are parsed one after the other, so a second request parsed out of the first
shows up as a second answer. `RecordingServer` is a stand-in control plane that records what reaches it.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field

from support.ports import LOOPBACK


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names (the last value of a repeated one)
    body: bytes


@dataclass
class Exchange:
    answers: list[Answer]  # interim (1xx) answers left out
    closed: bool  # the server closed the connection (FIN or reset) before `wait_s` ran out
    rest: bytes  # bytes after the last complete answer: none from a well-behaved server
    elapsed_s: float  # from the first byte sent until the connection closed (or `wait_s`)

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]


def exchange(
    port: int,
    data: bytes,
    *,
    half_close: bool = False,
    wait_s: float = 5.0,
) -> Exchange:
    """Send `data` on a new connection (then shut the sending side when `half_close`), and read until the
    server closes it or `wait_s` passes."""
    started = time.monotonic()
    buf = bytearray()
    closed = False
    with socket.create_connection((LOOPBACK, port), timeout=wait_s) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed while we were still sending (a refused huge head)
            pass
        deadline = started + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not piece:
                closed = True
                break
            buf += piece
    answers, rest = parse_answers(bytes(buf), until_close=closed)
    return Exchange(answers, closed, rest, time.monotonic() - started)


def parse_answers(raw: bytes, *, until_close: bool) -> tuple[list[Answer], bytes]:
    """Complete HTTP/1.x responses at the start of `raw`, and what is left after them."""
    out: list[Answer] = []
    pos = 0
    while True:
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            return out, raw[pos:]
        lines = raw[pos:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            return out, raw[pos:]
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        body_start = end + 4
        if 100 <= status < 200:
            pos = body_start
            continue
        if "content-length" in headers:
            body_end = body_start + int(headers["content-length"])
            if body_end > len(raw):
                return out, raw[pos:]
            body = raw[body_start:body_end]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            decoded = _dechunk(raw, body_start)
            if decoded is None:
                return out, raw[pos:]
            body, body_end = decoded
        elif status in (204, 304):
            body, body_end = b"", body_start
        elif until_close:
            body, body_end = raw[body_start:], len(raw)
        else:
            return out, raw[pos:]
        out.append(Answer(status, headers, body))
        pos = body_end


def _dechunk(raw: bytes, pos: int) -> tuple[bytes, int] | None:
    body = bytearray()
    while True:
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(raw[pos:line_end].split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = raw.find(b"\r\n", pos)  # no trailers from our servers: an empty line
            return (bytes(body), trailer_end + 2) if trailer_end >= 0 else None
        if pos + size + 2 > len(raw):
            return None
        body += raw[pos : pos + size]
        pos += size + 2


def request(
    method: str, target: str, headers: list[str], body: bytes = b"", *, version: str = "HTTP/1.1"
) -> bytes:
    """A request head from header lines as given (nothing added, nothing checked) and a body."""
    head = f"{method} {target} {version}\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1") + body


def chunked(*pieces: bytes, end: bool = True) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + (b"0\r\n\r\n" if end else b"")


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """A keep-alive HTTP/1.1 server on loopback (a thread per connection) that records every request it
    parses and answers each with 200 and a small JSON body. Understands Content-Length bodies only, which
    is all the gateway's pass-through sends."""

    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: socketserver.ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RecordingServer:
        recorder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline(65537)
                    if not line:
                        return
                    method, target, _ = line.decode("latin-1").split(" ", 2)
                    headers: dict[str, str] = {}
                    while (h := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                        name, _, value = h.decode("latin-1").partition(":")
                        headers[name.strip().lower()] = value.strip()
                    body = self.rfile.read(int(headers.get("content-length", "0")))
                    with recorder._lock:
                        recorder.seen.append(Seen(method, target, headers, body))
                    self.wfile.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
                        b'{"ok":true}'
                    )
                    self.wfile.flush()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="recording-server", daemon=True).start()
        return self

    def targets(self) -> list[str]:
        with self._lock:
            return [s.target for s in self.seen]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
