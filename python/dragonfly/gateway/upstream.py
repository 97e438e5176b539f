"""The seller-facing HTTP client of a data-plane worker: keep-alive connection pools over `h1`.

Seller base URLs are checked again at connect time (ARCHITECTURE.md, invariant 7): resolved addresses that are
loopback, private, link-local or metadata are refused unless the operator allows private upstreams, so a
DNS answer that changed after registration cannot reach them. The connection goes to the checked address
itself, never to the name again (a second lookup could answer something else: DNS rebinding); the lookup
is the one every seller connection uses (`services.upstream_urls.resolve`). Redirects are never followed
(a 3xx is just a non-200 answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from urllib.parse import urlsplit

from dragonfly.config import Settings
from dragonfly.domain.urlpolicy import is_forbidden_address
from dragonfly.gateway.h1 import (
    H1Connection,
    H1Response,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamDrained,
    UpstreamFailure,
    UpstreamTimedOut,
    body_framing,
    parse_head,
)
from dragonfly.services import upstream_urls

__all__ = [
    "UpstreamBroken",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamDrained",
    "UpstreamFailure",
    "UpstreamTimedOut",
]

DNS_TTL_S = 30.0
KEEPALIVE_S = 30.0
MAX_IDLE_PER_HOST = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Target:
    """A parsed seller URL: pool key, request-target and the Host header, cached per URL string."""

    __slots__ = ("host_header", "key", "path")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise UpstreamConnectError("upstream URL is not http(s)")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise UpstreamConnectError("upstream URL has an invalid port") from None
        host = parts.hostname
        self.key = (scheme, host, port)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if any(c in path for c in "\r\n "):
            raise UpstreamConnectError("upstream URL has an invalid path")
        self.path = path.encode("ascii", "strict") if path.isascii() else path.encode("utf-8")
        shown = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            shown += f":{port}"
        self.host_header = shown.encode("idna") if not shown.isascii() else shown.encode()


class UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: dict[tuple[str, str, int], list[H1Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every open seller connection, idle or in use (a set operation per connection, not per request).
        self._open: set[H1Connection] = set()
        self._drained = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep(), name="upstream-idle-sweep")

    def _target(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self._targets) > 4096:
                self._targets.clear()
            self._targets[url] = t
        return t

    async def post(self, url: str, api_key: str, body: bytes, accept_sse: bool) -> H1Response:
        """Send the request and return once the response head arrived. The caller must `release()` or
        `close()` the response."""
        target = self._target(url)
        if "\r" in api_key or "\n" in api_key:
            raise UpstreamConnectError("upstream credential is not a valid header value")
        head = b"".join(
            (
                b"POST ",
                target.path,
                b" HTTP/1.1\r\nhost: ",
                target.host_header,
                b"\r\nauthorization: Bearer ",
                api_key.encode("latin-1", "replace"),
                b"\r\ncontent-type: application/json\r\naccept: ",
                b"text/event-stream" if accept_sse else b"application/json",
                b"\r\naccept-encoding: identity\r\nuser-agent: dragonfly-gateway\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
            )
        )
        # A short body rides in the head's segment; a large one is not copied.
        data = head + body if len(body) <= 16384 else None
        s = self._settings
        for attempt in (0, 1):
            conn, reused = await self._acquire(target.key)
            if data is not None:
                conn.begin(data, s.upstream_read_timeout_s, s.upstream_total_timeout_s)
            else:
                conn.begin(head, s.upstream_read_timeout_s, s.upstream_total_timeout_s)
                assert conn.transport is not None
                conn.transport.write(body)
            try:
                return await self._response(conn)
            except UpstreamConnectError:
                conn.abort()
                # A kept-alive connection the seller closed just as we sent: retry once, fresh. Nothing
                # of an answer arrived, so the seller did not act on it.
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
        raise AssertionError("unreachable")

    async def _response(self, conn: H1Connection) -> H1Response:
        while True:
            parsed = parse_head(conn)
            if parsed is not None:
                break
            await conn.wait_data()
        status, headers = parsed
        mode, length, keep_alive, decoder = body_framing(status, headers)
        return H1Response(conn, status, headers, mode, length, keep_alive, decoder, self._release)

    def _release(self, conn: H1Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn.abort()

    async def _acquire(self, key: tuple[str, str, int]) -> tuple[H1Connection, bool]:
        idle = self._idle.get(key)
        if idle:
            assert self._loop is not None
            now = self._loop.time()
            while idle:
                conn = idle.pop()  # the most recently used: warmest, least likely closed by the seller
                if not conn.closed and not conn.eof and now - conn.idle_since < KEEPALIVE_S:
                    return conn, True
                conn.abort()
        return await self._connect(key), False

    async def _connect(self, key: tuple[str, str, int]) -> H1Connection:
        scheme, host, port = key
        loop = self._loop
        assert loop is not None
        if self._drained:
            raise UpstreamDrained("the gateway is shutting down")
        addresses = await self._resolve(host, port)
        tls = self._tls() if scheme == "https" else None
        last: Exception | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self._settings.upstream_connect_timeout_s):
                    _, proto = await loop.create_connection(
                        lambda: H1Connection(loop, key, self._open),
                        host=address,
                        port=port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                    )
                return proto
            except TimeoutError:
                last = UpstreamTimedOut("upstream did not accept the connection in time")
            except (OSError, ssl.SSLError) as exc:
                last = UpstreamConnectError(type(exc).__name__)
        assert last is not None
        raise last

    async def _resolve(self, host: str, port: int) -> list[str]:
        allow_private = self._settings.allow_private_upstreams
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if not allow_private and is_forbidden_address(host):
                raise UpstreamConnectError("upstream address is not allowed")
            return [host]
        assert self._loop is not None
        now = self._loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await upstream_urls.resolve(host, port)
        if not addresses:
            raise UpstreamConnectError("upstream host does not resolve")
        if not allow_private:
            addresses = [a for a in addresses if not is_forbidden_address(a)]
            if not addresses:
                raise UpstreamConnectError("upstream host resolves only to forbidden addresses")
        if len(self._dns) > 4096:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL_S, addresses)
        return addresses

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _sweep(self) -> None:
        """Close connections idle past the keep-alive window (sellers close theirs, too)."""
        while True:
            await asyncio.sleep(KEEPALIVE_S / 3)
            assert self._loop is not None
            now = self._loop.time()
            for key, idle in list(self._idle.items()):
                keep = []
                for c in idle:
                    if not c.closed and now - c.idle_since < KEEPALIVE_S:
                        keep.append(c)
                    else:
                        c.abort()
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]

    def drain(self) -> int:
        """The drain deadline passed (gateway/drain.py): cut every seller connection, so each call still
        waiting on one ends with UpstreamDrained, and refuse new ones. Returns how many were cut."""
        self._drained = True
        conns = list(self._open)
        for conn in conns:
            conn.cut()
        self._idle.clear()
        return len(conns)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for idle in self._idle.values():
            for c in idle:
                c.abort()
        self._idle.clear()
