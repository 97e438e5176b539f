"""The data plane's seller client (gateway.h1 + gateway.upstream) against scripted HTTP servers on loopback.

Each server is a real TCP listener that answers with exactly the bytes a test gives it, so framing,
keep-alive, timeouts and broken answers are exercised on the wire, not through a mock."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from dragonfly.config import Settings
from dragonfly.gateway.h1 import BodyTooLarge
from dragonfly.gateway.upstream import (
    UpstreamBroken,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamDrained,
    UpstreamTimedOut,
)

# A reply is the list of byte pieces sent (with a short pause between them) for one request, or a
# callable taking the request head and returning them. `None` as a piece closes the connection; a float
# is a pause of that many seconds.
Reply = list[bytes | float | None]


@dataclass
class Scripted:
    replies: list[Reply | Callable[[bytes], Reply]]
    port: int = 0
    accepts: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                if not self.replies:
                    await reader.read()  # nothing scripted: stay silent until the client leaves
                    return
                reply = self.replies.pop(0)
                pieces = reply(head) if callable(reply) else reply
                for piece in pieces:
                    if piece is None:
                        writer.close()
                        return
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                        continue
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.002)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    async def start(*replies: Reply | Callable[[bytes], Reply]) -> Scripted:
        s = Scripted(list(replies))
        s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
        s.port = s.server.sockets[0].getsockname()[1]
        servers.append(s)
        return s

    yield start  # type: ignore[misc]
    for s in servers:
        assert s.server is not None
        s.server.close()


def _settings(**kw: object) -> Settings:
    base = Settings(allow_private_upstreams=True, upstream_read_timeout_s=2.0, upstream_connect_timeout_s=2.0)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(_settings())
    await c.start()
    yield c
    await c.close()


def ok(body: bytes, extra: bytes = b"") -> Reply:
    return [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
        % (len(body), extra),
        body,
    ]


async def fetch(client: UpstreamClient, s: Scripted) -> bytes:
    """One non-streamed request to `s`: its whole body, the connection handed back."""
    resp = await client.post(url(s), "k", b"{}", accept_sse=False)
    try:
        return await resp.read(1 << 20)
    finally:
        resp.release()


def url(s: Scripted, path: str = "/v1/chat/completions") -> str:
    return f"http://127.0.0.1:{s.port}{path}"


async def test_content_length_body_and_keep_alive_reuse(scripted, client) -> None:
    s = await scripted(ok(b'{"a":1}'), ok(b'{"b":2}'))
    for expected in (b'{"a":1}', b'{"b":2}'):
        resp = await client.post(url(s), "sk-test", b'{"model":"m"}', accept_sse=False)
        assert resp.status == 200
        assert await resp.read(1 << 20) == expected
        resp.release()
    assert s.accepts == 1  # the second request rode the kept-alive connection
    head = s.heads[0].lower()
    assert head.startswith(b"post /v1/chat/completions http/1.1\r\n")
    assert b"authorization: bearer sk-test\r\n" in head
    assert b"host: 127.0.0.1:%d\r\n" % s.port in head
    assert b"content-length: 13\r\n" in head
    assert s.bodies[0] == b'{"model":"m"}'


async def test_chunked_body_split_into_tiny_pieces_with_extensions_and_trailers(scripted, client) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    s = await scripted([wire[i : i + 3] for i in range(0, len(wire), 3)], ok(b"next"))
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    assert await resp.read(1 << 20) == b"hello world"
    resp.release()
    assert await fetch(client, s) == b"next"
    assert s.accepts == 1


async def test_stream_pieces_arrive_as_they_are_sent(scripted, client) -> None:
    events = [b"data: %d\n\n" % i for i in range(5)]
    chunks: Reply = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    chunks += [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [b"0\r\n\r\n"]
    s = await scripted(chunks)
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    got = []
    while True:
        piece = await resp.read_some()
        if not piece:
            break
        got.append(piece)
    assert b"".join(got) == b"".join(events)
    assert len(got) >= 3  # relayed as they came, not buffered to the end
    resp.release()


def _sse_chunks(events: list[bytes], end: bytes = b"0\r\n\r\n") -> Reply:
    chunks: Reply = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    return chunks + [b"%x\r\n%s\r\n" % (len(e), e) for e in events] + [end]


async def test_piped_stream_hands_each_piece_to_the_sink_and_keeps_the_connection(scripted, client) -> None:
    events = [b"data: %d\n\n" % i for i in range(6)]
    s = await scripted(_sse_chunks(events), ok(b"next"))
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    got: list[bytes] = []
    await resp.pipe(lambda piece: got.append(piece) or False)
    assert b"".join(got) == b"".join(events)
    assert len(got) >= 3  # delivered as they came
    assert resp.done
    resp.release()
    assert await fetch(client, s) == b"next"
    assert s.accepts == 1  # the piped response left the connection reusable


def _done_then(*rest: bytes | float | None) -> Reply:
    return [*_sse_chunks([b"data: 1\n\n", b"data: [DONE]\n\n"], end=b""), *rest]


async def _relay_to_done(client: UpstreamClient, s: Scripted) -> None:
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    seen: list[bytes] = []
    await resp.pipe(lambda p: seen.append(p) or b"[DONE]" in b"".join(seen))
    resp.release()


async def test_terminator_after_done_is_drained_and_the_connection_reused(scripted, client) -> None:
    s = await scripted(_done_then(0.05, b"0\r\n\r\n"), ok(b"next"))
    await _relay_to_done(client, s)
    await asyncio.sleep(0.15)  # the terminator came and was read in the background
    assert await fetch(client, s) == b"next"
    assert s.accepts == 1


async def test_a_body_that_does_not_end_after_done_is_closed(scripted, client, monkeypatch) -> None:
    monkeypatch.setattr("dragonfly.gateway.h1.DRAIN_S", 0.1)
    s = await scripted(_done_then())  # then silence: the terminator never comes
    await _relay_to_done(client, s)
    await asyncio.sleep(0.2)
    s.replies = [ok(b"next")]
    assert await fetch(client, s) == b"next"
    assert s.accepts == 2


async def test_a_body_that_goes_on_after_done_is_closed(scripted, client) -> None:
    more = [b"%x\r\n%s\r\n" % (8192, b"x" * 8192)] * 10  # 80 KiB more, past DRAIN_BYTES
    s = await scripted(_done_then(*more, b"0\r\n\r\n"), ok(b"next"))
    await _relay_to_done(client, s)
    await asyncio.sleep(0.2)
    assert await fetch(client, s) == b"next"
    assert s.accepts == 2


async def test_piped_sink_can_stop_before_the_body_ends(scripted, client) -> None:
    events = [b"data: 1\n\n", b"data: [DONE]\n\n"]
    s = await scripted(_sse_chunks(events, end=b""))  # the terminating chunk never comes
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    got: list[bytes] = []
    await asyncio.wait_for(resp.pipe(lambda p: got.append(p) or b"[DONE]" in b"".join(got)), 2)
    assert b"".join(got).endswith(b"data: [DONE]\n\n")
    resp.release()  # not at its end: closed, never reused


async def test_piped_body_broken_by_the_seller_fails_the_pipe(scripted, client) -> None:
    s = await scripted([*_sse_chunks([b"data: 1\n\n"], end=b""), b"ff\r\npartial", None])
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    got: list[bytes] = []
    with pytest.raises(UpstreamBroken):
        await resp.pipe(lambda p: got.append(p) or False)
    assert b"".join(got).startswith(b"data: 1\n\n")
    resp.release()


async def test_piped_silence_times_out(scripted) -> None:
    s = await scripted(_sse_chunks([b"data: 1\n\n"], end=b""))  # then silence
    c = UpstreamClient(_settings(upstream_read_timeout_s=0.3))
    await c.start()
    try:
        resp = await c.post(url(s), "k", b"{}", accept_sse=True)
        with pytest.raises(UpstreamTimedOut):
            await resp.pipe(lambda p: False)
        resp.release()
    finally:
        await c.close()


async def test_piped_sink_error_ends_the_pipe_with_it(scripted, client) -> None:
    s = await scripted(_sse_chunks([b"data: 1\n\n", b"data: 2\n\n"]))

    def sink(piece: bytes) -> bool:
        raise ValueError("unusable")

    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    with pytest.raises(ValueError, match="unusable"):
        await resp.pipe(sink)
    resp.close()


async def test_piped_close_from_outside_ends_the_pipe(scripted, client) -> None:
    s = await scripted(_sse_chunks([b"data: 1\n\n"], end=b""))  # then silence
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    done = resp.pipe(lambda p: False)
    await asyncio.sleep(0.05)
    resp.close()  # what the gateway does when its client goes away
    with pytest.raises(UpstreamBroken):
        await asyncio.wait_for(done, 1)


async def test_drain_cuts_every_call_in_flight_and_refuses_new_ones(scripted, client) -> None:
    """The drain deadline (gateway/drain.py): a call waiting for its head, a piped stream and an
    until-close body each end with UpstreamDrained — the last not mistaken for a body that ended — and
    no new connection is made."""
    waiting = await scripted([])  # never answers
    streaming = await scripted(_sse_chunks([b"data: 1\n\n"], end=b""))  # then silence
    until_close = await scripted([b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart"])  # then silence
    head = asyncio.ensure_future(client.post(url(waiting), "k", b"{}", accept_sse=False))
    stream = await client.post(url(streaming), "k", b"{}", accept_sse=True)
    piped = stream.pipe(lambda p: False)
    body = await client.post(url(until_close), "k", b"{}", accept_sse=False)
    assert await body.read_some() == b"part"
    rest = asyncio.ensure_future(body.read(1 << 20))
    await asyncio.sleep(0.05)
    assert client.drain() == 3
    for pending in (head, piped, rest):
        with pytest.raises(UpstreamDrained):
            await asyncio.wait_for(pending, 1)
    with pytest.raises(UpstreamDrained):
        await client.post(url(streaming), "k", b"{}", accept_sse=True)
    assert streaming.accepts == 1


async def test_piped_gzip_and_until_close_bodies(scripted, client) -> None:
    payload = b"data: x\n\n" * 200
    packed = gzip.compress(payload)
    s = await scripted([b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n\r\n", packed[:50], packed[50:], None])
    resp = await client.post(url(s), "k", b"{}", accept_sse=True)
    got: list[bytes] = []
    await resp.pipe(lambda p: got.append(p) or False)
    assert b"".join(got) == payload
    resp.release()


async def test_connection_close_and_body_until_close(scripted, client) -> None:
    s = await scripted([b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-", b"close", None], ok(b"again"))
    assert await fetch(client, s) == b"until-close"
    assert await fetch(client, s) == b"again"
    assert s.accepts == 2  # a closed connection is never reused


async def test_gzip_body_is_decoded(scripted, client) -> None:
    payload = b'{"choices":[]}' * 50
    packed = gzip.compress(payload)
    s = await scripted(ok(packed, b"content-encoding: gzip\r\n"))
    assert await fetch(client, s) == payload


async def test_interim_100_continue_is_skipped(scripted, client) -> None:
    s = await scripted([b"HTTP/1.1 100 Continue\r\n\r\n", *ok(b"fine")])
    resp = await client.post(url(s), "k", b"{}", accept_sse=False)
    assert resp.status == 200
    assert await resp.read(1 << 20) == b"fine"
    resp.release()


async def test_error_status_is_returned_with_its_body(scripted, client) -> None:
    body = b'{"error":{"message":"bad"}}'
    s = await scripted([b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: %d\r\n\r\n" % len(body), body])
    resp = await client.post(url(s), "k", b"{}", accept_sse=False)
    assert resp.status == 429
    assert await resp.read(64 * 1024) == body
    resp.release()


async def test_silent_seller_times_out_on_the_read_deadline(scripted) -> None:
    s = await scripted([b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"])  # then silence
    c = UpstreamClient(_settings(upstream_read_timeout_s=0.3))
    await c.start()
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp = await c.post(url(s), "k", b"{}", accept_sse=False)
        with pytest.raises(UpstreamTimedOut):
            await resp.read(1 << 20)
        assert 0.25 < loop.time() - t0 < 2.0
        resp.release()
    finally:
        await c.close()


async def test_no_answer_at_all_times_out(scripted) -> None:
    s = await scripted()  # accepts, reads the request, never answers
    c = UpstreamClient(_settings(upstream_read_timeout_s=0.3))
    await c.start()
    try:
        with pytest.raises(UpstreamTimedOut):
            await c.post(url(s), "k", b"{}", accept_sse=False)
    finally:
        await c.close()


async def test_seller_closing_a_kept_alive_connection_is_retried_on_a_fresh_one(scripted, client) -> None:
    # The first connection answers once and closes without saying so (as an idle timeout would).
    s = await scripted([*ok(b"one"), None])
    assert await fetch(client, s) == b"one"
    await asyncio.sleep(0.05)
    s.replies = [ok(b"two")]
    assert await fetch(client, s) == b"two"
    assert s.accepts == 2


async def test_close_mid_body_is_broken(scripted, client) -> None:
    s = await scripted([b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", None])
    resp = await client.post(url(s), "k", b"{}", accept_sse=False)
    with pytest.raises(UpstreamBroken):
        await resp.read(1 << 20)
    resp.release()


async def test_close_before_answering_is_a_connect_error(scripted, client) -> None:
    s = await scripted([None])
    with pytest.raises(UpstreamConnectError):
        await client.post(url(s), "k", b"{}", accept_sse=False)


@pytest.mark.parametrize(
    "wire",
    [
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno-colon-here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 1\r\n\r\nx",
    ],
)
async def test_invalid_http_is_broken(scripted, client, wire: bytes) -> None:
    s = await scripted([wire])
    with pytest.raises(UpstreamBroken):
        resp = await client.post(url(s), "k", b"{}", accept_sse=False)
        await resp.read(1 << 20)


async def test_body_over_the_limit_is_refused(scripted, client) -> None:
    s = await scripted(ok(b"x" * 5000))
    resp = await client.post(url(s), "k", b"{}", accept_sse=False)
    with pytest.raises(BodyTooLarge):
        await resp.read(1000)


async def test_large_request_body_arrives_intact(scripted, client) -> None:
    s = await scripted(ok(b"{}"))
    big = b'{"messages":"' + b"y" * 300_000 + b'"}'
    resp = await client.post(url(s), "k", big, accept_sse=False)
    assert await resp.read(1 << 20) == b"{}"
    resp.release()
    assert s.bodies[0] == big


async def test_refused_port_is_a_connect_error(client) -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    with pytest.raises(UpstreamConnectError):
        await client.post(f"http://127.0.0.1:{port}/x", "k", b"{}", accept_sse=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254"])
async def test_private_addresses_are_refused_unless_allowed(scripted, host: str) -> None:
    s = await scripted(ok(b"{}"))
    c = UpstreamClient(_settings(allow_private_upstreams=False))
    await c.start()
    try:
        with pytest.raises(UpstreamConnectError):
            await c.post(f"http://{host}:{s.port}/v1/x", "k", b"{}", accept_sse=False)
        assert s.accepts == 0
    finally:
        await c.close()


async def test_header_injection_through_a_credential_is_refused(scripted, client) -> None:
    s = await scripted(ok(b"{}"))
    with pytest.raises(UpstreamConnectError):
        await client.post(url(s), "k\r\nx-evil: 1", b"{}", accept_sse=False)
    assert s.accepts == 0


async def test_close_drops_the_connection_so_the_seller_sees_it(scripted, client) -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()  # returns when the client drops the connection
        closed.set()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        resp = await client.post(f"http://127.0.0.1:{port}/x", "k", b"{}", accept_sse=True)
        assert await resp.read_some() == b"first"
        resp.close()
        await asyncio.wait_for(closed.wait(), 2)
    finally:
        srv.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1 (IP SAN) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dragonfly-test-seller")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "seller.pem", tmp_path / "seller.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_https_seller_verified_against_the_trust_store(tmp_path: Path, monkeypatch) -> None:
    """Real sellers are HTTPS: TLS with certificate and host verification, keep-alive over TLS, and a
    certificate the trust store does not know is refused."""
    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    s = Scripted([ok(b'{"tls":1}'), ok(b'{"tls":2}')])
    s.server = await asyncio.start_server(s.handle, "127.0.0.1", 0, ssl=server_ctx)
    s.port = s.server.sockets[0].getsockname()[1]
    try:
        untrusted = UpstreamClient(_settings())
        await untrusted.start()
        try:
            with pytest.raises(UpstreamConnectError):
                await untrusted.post(f"https://127.0.0.1:{s.port}/v1/x", "k", b"{}", accept_sse=False)
        finally:
            await untrusted.close()
        # The default context reads the trust store when it is made (lazily, at the first https call).
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
        trusted = UpstreamClient(_settings())
        await trusted.start()
        try:
            for expected in (b'{"tls":1}', b'{"tls":2}'):
                resp = await trusted.post(f"https://127.0.0.1:{s.port}/v1/x", "k", b"{}", accept_sse=False)
                assert await resp.read(1 << 20) == expected
                resp.release()
        finally:
            await trusted.close()
        assert s.accepts == 1  # the refused handshake never got a handler; one TLS connection for both
        assert b"host: 127.0.0.1:%d" % s.port in s.heads[0].lower()
    finally:
        s.server.close()
