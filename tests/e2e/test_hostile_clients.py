"""Hostile clients against a running data plane, started as `dragonfly serve` starts it (the same Granian
command, `cli/serve.py` `gateway_command`), with short header and body deadlines. Its control plane is a
recording stand-in, so whatever the pass-through forwards is seen byte for byte.

- Request smuggling and header abuse, on raw sockets, to the data plane (`/v1/chat/completions`, with a
  valid key, so the body is read and a seller may be called) and through the pass-through (`/api/*`):
  each request gets a clean 4xx or a closed connection, or is served once where the parser accepts it on
  purpose; never a 5xx, never a second request parsed out of the first (a smuggled request would be
  forwarded to `/api/smuggled/...`, and would be a second answer on the socket).
- A body that stalls or breaks off: 408 at the body deadline, 400 for a broken one; neither reaches a
  seller or the control plane.
- Half-open connections (nothing sent, or half a request head) are cut at the header deadline while
  other clients are served; an idle keep-alive connection is closed at the same deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson
import pytest
import requests
from support.market import SECRET, market_settings, seed_buyer, seed_listing
from support.ports import LOOPBACK, free_port
from support.processes import ProcessGroup
from support.raw_http import Exchange, RecordingServer, chunked, exchange, request

from dragonfly.cli.serve import gateway_command
from dragonfly.demo.seller import DemoSeller

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 1.0
CHAT = "/v1/chat/completions"


@dataclass
class Gateway:
    port: int
    key: str
    seller: DemoSeller
    control: RecordingServer

    @property
    def origin(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    data.mkdir()
    settings = market_settings(f"sqlite:///{data / 'dragonfly.db'}", data)
    seller_thread = DemoSeller().run_in_thread()
    control = RecordingServer().start()
    group = ProcessGroup(root / "proc-logs")
    try:
        seller = seller_thread.seller
        asyncio.run(seed_listing(settings, seller))
        _, key = asyncio.run(seed_buyer(settings, credit_cents=500))
        port = free_port()
        served = dataclasses.replace(
            settings,
            port=port,
            http_header_timeout_s=HEADER_TIMEOUT_S,
            http_body_timeout_s=BODY_TIMEOUT_S,
        )
        group.start(
            gateway_command(served),
            ready_port=port,
            env={
                "DRAGONFLY_DATABASE_URL": settings.database_url,
                "DRAGONFLY_DATA_DIR": settings.data_dir,
                "DRAGONFLY_SECRET_KEY": SECRET,
                "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1",
                "DRAGONFLY_CONTROL_URL": f"http://{LOOPBACK}:{control.port}",
                "DRAGONFLY_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            },
            timeout_s=60,
        )
        yield Gateway(port, key, seller, control)
    except BaseException:
        group.dump()
        raise
    finally:
        group.stop_all()
        control.stop()
        seller_thread.stop()


# -- the corpus ----------------------------------------------------------------------------------------

SERVED, REFUSED = "served", "refused"


@dataclass(frozen=True)
class Plane:
    name: str
    target: Callable[[str], str]  # the request target for a case
    auth: list[str]  # header lines every request carries
    body: Callable[[str], bytes]  # a well-formed body for a case


DATA = Plane(
    "data",
    lambda case: CHAT,
    [],  # filled with the buyer key per run
    lambda case: orjson.dumps({"model": "demo/echo-1", "messages": [{"role": "user", "content": case}]}),
)
PASS = Plane("pass", lambda case: f"/api/echo/{case}", [], lambda case: orjson.dumps({"case": case}))


def hidden(case: str) -> bytes:
    """A request that must never be parsed out of another one's bytes: forwarded, it would show."""
    return f"GET /api/smuggled/{case} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


Build = Callable[[Plane, list[str], str], bytes]  # (plane, its header lines, case name) -> bytes sent


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    expect: str | dict[str, str]  # SERVED or REFUSED, or one of them per plane name
    half_close: bool = False  # shut the sending side after the bytes (a client that gave up)
    why: str = ""  # for what the parser accepts on purpose


CASES: list[Case] = []


def corpus(name: str, expect: str | dict[str, str], *, half_close: bool = False, why: str = "") -> Callable:
    def register(build: Build) -> Build:
        CASES.append(Case(name, build, expect, half_close, why))
        return build

    return register


def _cl(body: bytes) -> str:
    return f"Content-Length: {len(body)}"


def _post(plane: Plane, hdrs: list[str], case: str, extra: list[str], body: bytes, **kw: str) -> bytes:
    return request("POST", plane.target(case), ["Host: x", *hdrs, *extra], body, **kw)


@corpus("cl_te", SERVED, why="hyper frames it by transfer-encoding and closes the connection after it")
def _cl_te(p: Plane, h: list[str], c: str) -> bytes:
    body = chunked(p.body(c)) + hidden(c)
    return _post(p, h, c, [_cl(body), "Transfer-Encoding: chunked"], body)


@corpus("te_cl", SERVED, why="the same with the headers the other way round")
def _te_cl(p: Plane, h: list[str], c: str) -> bytes:
    body = chunked(p.body(c)) + hidden(c)
    return _post(p, h, c, ["Transfer-Encoding: chunked", _cl(body)], body)


@corpus("two_content_lengths", REFUSED)
def _two_cl(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [_cl(body), _cl(body + hidden(c))], body + hidden(c))


@corpus("two_equal_content_lengths", SERVED, why="RFC 9110 8.6 lets a recipient take repeated equal values")
def _two_equal_cl(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [_cl(body), _cl(body)], body)


@corpus("content_length_list", REFUSED)
def _cl_list(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [f"Content-Length: {len(body)}, {len(body)}"], body)


@corpus("content_length_plus", REFUSED)
def _cl_plus(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [f"Content-Length: +{len(body)}"], body)


@corpus("space_before_colon", REFUSED)
def _space_colon(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [f"Content-Length : {len(body)}"], body + hidden(c))


@corpus("obs_fold", REFUSED)
def _obs_fold(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [_cl(body), "X-Folded: a", " b"], body)


@corpus("bare_lf", SERVED, why="RFC 9112 2.2 lets a recipient read a bare LF as a line end")
def _bare_lf(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c))], p.body(c)).replace(b"\r\n", b"\n")


@corpus("bare_cr", REFUSED)
def _bare_cr(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c))], p.body(c)).replace(b"\r\n", b"\r", 1)


@corpus("header_64k", REFUSED)
def _huge_header(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), "X-Big: " + "a" * 65536], p.body(c))


@corpus("headers_500", REFUSED)
def _many_headers(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), *(f"X-H{i}: v" for i in range(500))], p.body(c))


@corpus("control_char_in_name", REFUSED)
def _ctl_name(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), "X\x01A: 1"], p.body(c))


@corpus("nul_in_value", REFUSED)
def _nul_value(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), "X-A: a\x00b"], p.body(c))


@corpus("cr_in_value", REFUSED)
def _cr_value(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), "X-A: a\rb"], p.body(c))


@corpus("obs_text_in_value", SERVED, why="RFC 9110 5.5 keeps bytes 0x80-0xFF (obs-text) in field values")
def _obs_text(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c)), "X-A: caf\xe9"], p.body(c))


@corpus("http10_without_length", {"data": REFUSED, "pass": SERVED})
def _http10(p: Plane, h: list[str], c: str) -> bytes:
    # No length: the body is empty (RFC 9112 6.3), the connection closes after the answer, and the bytes
    # after the head are never read (on the data plane an empty body is a 400).
    return _post(p, h, c, [], p.body(c) + hidden(c), version="HTTP/1.0")


@corpus("chunked_in_http10", REFUSED)
def _te_http10(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: chunked"], chunked(p.body(c)) + hidden(c), version="HTTP/1.0")


@corpus("chunk_size_not_hex", REFUSED)
def _chunk_bad(p: Plane, h: list[str], c: str) -> bytes:
    # The first chunk is a whole, valid body: cut off there, it would be served.
    return _post(p, h, c, ["Transfer-Encoding: chunked"], chunked(p.body(c), end=False) + b"zz\r\nab\r\n")


@corpus("chunk_size_negative", REFUSED)
def _chunk_negative(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: chunked"], chunked(p.body(c), end=False) + b"-5\r\nab\r\n")


@corpus("chunk_size_overflow", REFUSED)
def _chunk_overflow(p: Plane, h: list[str], c: str) -> bytes:
    body = chunked(p.body(c), end=False) + b"fffffffffffffffff1\r\nab\r\n"
    return _post(p, h, c, ["Transfer-Encoding: chunked"], body)


@corpus("chunk_shorter_than_its_data", REFUSED)
def _chunk_short(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, ["Transfer-Encoding: chunked"], b"2\r\n" + body + b"\r\n0\r\n\r\n" + hidden(c))


@corpus("chunked_body_cut_off", REFUSED, half_close=True)
def _chunk_cut(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: chunked"], chunked(p.body(c), end=False))


@corpus("content_length_body_cut_off", REFUSED, half_close=True)
def _cl_cut(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    return _post(p, h, c, [f"Content-Length: {len(body) + 100}"], body)


@corpus("chunk_extension_flood", REFUSED)
def _chunk_ext(p: Plane, h: list[str], c: str) -> bytes:
    body = p.body(c)
    flood = b"%x;%s\r\n%s\r\n0\r\n\r\n" % (len(body), b"e" * 100_000, body)
    return _post(p, h, c, ["Transfer-Encoding: chunked"], flood)


@corpus("chunked_trailers", REFUSED, why="request trailers are refused (gateway/http.py read_body)")
def _trailers(p: Plane, h: list[str], c: str) -> bytes:
    body = chunked(p.body(c), end=False) + b"0\r\nX-Trailer: 1\r\n\r\n"
    return _post(p, h, c, ["Transfer-Encoding: chunked"], body)


@corpus("gzip_then_chunked", REFUSED, why="hyper frames by the last coding and would pass gzip on undecoded")
def _gzip_chunked(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: gzip, chunked"], chunked(p.body(c)))


@corpus("chunked_twice", REFUSED)
def _chunked_twice(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: chunked, chunked"], chunked(chunked(p.body(c))))


@corpus("unknown_transfer_coding", REFUSED)
def _xchunked(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: xchunked"], chunked(p.body(c)) + hidden(c))


@corpus("identity_with_length", REFUSED)
def _identity(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Transfer-Encoding: identity", _cl(p.body(c))], p.body(c))


@corpus("request_hidden_in_body", {"data": REFUSED, "pass": SERVED}, why="a body, whatever it looks like")
def _in_body(p: Plane, h: list[str], c: str) -> bytes:
    body = hidden(c)  # not JSON: the data plane answers 400; the pass-through forwards it as a body
    return _post(p, h, c, [_cl(body)], body)


@corpus("extra_word_in_request_line", REFUSED)
def _request_line(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c))], p.body(c)).replace(b" HTTP/1.1", b" extra HTTP/1.1", 1)


@corpus("unknown_http_version", REFUSED)
def _version(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c))], p.body(c), version="HTTP/1.3")


@corpus("nul_in_target", REFUSED)
def _nul_target(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, [_cl(p.body(c))], p.body(c)).replace(b" HTTP/1.1", b"\x00 HTTP/1.1", 1)


@corpus("two_hosts", SERVED, why="the gateway routes by path and never forwards Host")
def _two_hosts(p: Plane, h: list[str], c: str) -> bytes:
    return _post(p, h, c, ["Host: y", _cl(p.body(c))], p.body(c))


def _expected(case: Case, plane: Plane) -> str:
    return case.expect if isinstance(case.expect, str) else case.expect[plane.name]


def test_smuggling_and_header_abuse_get_a_4xx_or_a_close_and_never_a_second_request(gateway: Gateway) -> None:
    data = dataclasses.replace(DATA, auth=[f"Authorization: Bearer {gateway.key}"])
    runs = [(case, plane) for case in CASES for plane in (data, PASS)]
    seller_before = gateway.seller.stats.requests

    def run(item: tuple[Case, Plane]) -> Exchange:
        case, plane = item
        raw = case.build(plane, plane.auth, case.name)
        return exchange(gateway.port, raw, half_close=case.half_close, wait_s=8)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(run, runs))

    forwarded = gateway.control.targets()
    problems: list[str] = []
    for (case, plane), ex in zip(runs, results, strict=True):
        label = f"{case.name} ({plane.name} plane): {ex.statuses}, closed={ex.closed}, rest={ex.rest[:60]!r}"
        if any(s >= 500 for s in ex.statuses):
            problems.append(f"{label}: a 5xx")
        if len(ex.answers) > 1:
            problems.append(f"{label}: more than one answer")
        if ex.rest or not ex.closed:
            problems.append(f"{label}: not a clean answer followed by a close")
        if _expected(case, plane) == SERVED:
            if ex.statuses != [200]:
                problems.append(f"{label}: should have been served once")
        elif not all(400 <= s < 500 for s in ex.statuses):
            problems.append(f"{label}: should have been refused with a 4xx or a close")
        if plane is PASS:
            reached = forwarded.count(f"/api/echo/{case.name}")
            if reached != (1 if _expected(case, plane) == SERVED else 0):
                problems.append(f"{label}: reached the control plane {reached} times")
    assert not problems, "\n".join(problems)
    smuggled = [t for t in forwarded if t.startswith("/api/smuggled")]
    assert not smuggled, f"requests parsed out of other requests' bytes: {smuggled}"
    # The data plane's served cases each called the seller once; refused ones never did.
    served_data = sum(1 for case in CASES if _expected(case, data) == SERVED)
    assert gateway.seller.stats.requests - seller_before == served_data


def test_a_stalled_body_is_cut_at_the_body_deadline_with_408_and_reaches_nothing(gateway: Gateway) -> None:
    body = orjson.dumps({"model": "demo/echo-1", "messages": [{"role": "user", "content": "stall"}]})
    auth = [f"Authorization: Bearer {gateway.key}"]
    stalls = {
        "data, content-length": request(
            "POST", CHAT, ["Host: x", *auth, f"Content-Length: {len(body) + 50}"], body
        ),
        "data, chunked": request(
            "POST", CHAT, ["Host: x", *auth, "Transfer-Encoding: chunked"], chunked(body, end=False)
        ),
        "pass, content-length": request("POST", "/api/echo/stall", ["Host: x", "Content-Length: 100"], b"{"),
        "pass, chunked": request(
            "POST", "/api/echo/stall", ["Host: x", "Transfer-Encoding: chunked"], b"1\r\n{\r\n"
        ),
    }
    seller_before = gateway.seller.stats.requests
    with ThreadPoolExecutor(max_workers=len(stalls)) as pool:
        answered = list(pool.map(lambda raw: exchange(gateway.port, raw, wait_s=6), stalls.values()))
    for name, ex in zip(stalls, answered, strict=True):
        assert ex.statuses == [408] and ex.closed and not ex.rest, (name, ex)
        assert ex.answers[0].headers["connection"] == "close", name
        assert orjson.loads(ex.answers[0].body)["error"]["code"] == "request_timeout", name
        # Cut at the deadline: the sweep runs every quarter of it.
        assert BODY_TIMEOUT_S - 0.1 <= ex.elapsed_s <= BODY_TIMEOUT_S * 1.25 + 1.0, (name, ex.elapsed_s)
    assert gateway.seller.stats.requests == seller_before
    assert "/api/echo/stall" not in gateway.control.targets()


def test_half_open_connections_are_cut_at_the_header_deadline_while_others_are_served(
    gateway: Gateway,
) -> None:
    # 300 from one address: half send nothing at all, half stop in the middle of a request head.
    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    for i in range(300):
        sock = socket.create_connection((LOOPBACK, gateway.port))
        if i % 2:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bear")
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        opened[sock] = time.monotonic()
    # Meanwhile the gateway serves everyone else: a probe, an inference and a pass-through request.
    started = time.monotonic()
    health = requests.get(f"{gateway.origin}/healthz", timeout=5)
    chat = requests.post(
        f"{gateway.origin}{CHAT}",
        json={"model": "demo/echo-1", "messages": [{"role": "user", "content": "hello"}]},
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=5,
    )
    passed = requests.get(f"{gateway.origin}/api/echo/meanwhile", timeout=5)
    assert (health.status_code, chat.status_code, passed.status_code) == (200, 200, 200), chat.text
    # ... while every one of the 300 was still open (none cut yet, none answered).
    assert not sel.select(timeout=0), "a half-open connection ended before the others were served"
    assert time.monotonic() - started < HEADER_TIMEOUT_S

    cut_after: list[float] = []
    deadline = time.monotonic() + HEADER_TIMEOUT_S + 5
    while opened and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except ConnectionError:
                data = b""
            if data:  # an answer to half a head would be a parse error; there must not be one
                raise AssertionError(f"a half-open connection got an answer: {data[:80]!r}")
            cut_after.append(time.monotonic() - opened.pop(sock))
            sel.unregister(sock)
            sock.close()
    for sock in opened:
        sock.close()
    assert not opened, f"{len(opened)} of 300 half-open connections were still open after the deadline"
    assert min(cut_after) >= HEADER_TIMEOUT_S - 0.1, min(cut_after)
    assert max(cut_after) <= HEADER_TIMEOUT_S + 2.0, max(cut_after)


def test_an_idle_keep_alive_connection_is_closed_at_the_header_deadline(gateway: Gateway) -> None:
    ex = exchange(gateway.port, request("GET", "/healthz", ["Host: x"]), wait_s=HEADER_TIMEOUT_S + 3)
    assert ex.statuses == [200] and ex.closed
    assert HEADER_TIMEOUT_S - 0.1 <= ex.elapsed_s <= HEADER_TIMEOUT_S + 1.0, ex.elapsed_s
