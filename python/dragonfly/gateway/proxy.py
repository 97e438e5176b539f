"""Everything the data plane does not own goes to the control plane on its internal port: a plain
streaming pass-through (ARCHITECTURE.md, Processes: one public port)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from dragonfly.errors import ServiceUnavailable
from dragonfly.gateway.auth import client_ip
from dragonfly.gateway.http import read_body

if TYPE_CHECKING:
    from dragonfly.gateway.runtime import Runtime

log = logging.getLogger("dragonfly.gateway.proxy")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        # The body is read whole before it is forwarded: an expectation was met here, not by the next hop.
        "expect",
        "proxy-connection",
    }
)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The control plane enforces its own, smaller limits; this only bounds what we buffer.
_MAX_FORWARD = 8 * 1024 * 1024


async def wait_for_control_plane(control_url: str, timeout_s: float) -> bool:
    """Wait until the control plane at `control_url` accepts a connection (`serve` starts both planes
    side by side; the worker calls this before its first request). False, logged, when it did not within
    `timeout_s`: the gateway serves anyway, and forwarded paths get 503 until the control plane is up."""
    parts = urlsplit(control_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        with contextlib.suppress(OSError, TimeoutError):
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if loop.time() >= deadline:
            log.warning("the control plane did not listen within %.0f s; serving without it", timeout_s)
            return False
        await asyncio.sleep(0.02)


class ControlPlaneClient:
    """aiohttp towards the control plane on loopback (any method, streamed answers; not the hot path)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=120, connect=5),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def forward(rt: Runtime, scope: Any, proto: Any, request_id: str, control_url: str) -> None:
    body = await read_body(proto, scope.headers, _MAX_FORWARD, rt.body_deadlines)
    headers = {k: v for k, v in scope.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["x-request-id"] = request_id
    # The client as this plane sees it (behind its trusted proxies), replacing whatever the client sent:
    # the control plane believes it from trusted peers (DRAGONFLY_CONTROL_TRUSTED_PROXIES, loopback by
    # default) and counts its abuse limits by it.
    headers["x-forwarded-for"] = client_ip(scope, scope.headers, rt.settings.trusted_proxies)
    url = control_url + scope.path + (f"?{scope.query_string}" if scope.query_string else "")
    # Read-your-writes: usage, balances and trade lists behind this call see every trade already answered.
    await rt.settler.flush()
    try:
        resp = await rt.control.session.request(
            scope.method, url, data=body, headers=headers, allow_redirects=False
        )
    except (aiohttp.ClientError, OSError, TimeoutError):
        raise ServiceUnavailable("The control plane is unavailable.") from None
    if scope.method in _WRITES and resp.status < 400:
        # A key, profile or listing change is in effect on the very next request through this port:
        # the control plane committed before it answered, so reload before the caller hears back.
        try:
            await rt.reload_snapshot()
        except Exception as exc:  # the poll catches up; the caller's change itself is committed
            log.warning("snapshot reload after a change failed: %s", type(exc).__name__)
    try:
        out_headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP]
        if not any(k.lower() == "x-request-id" for k, _ in out_headers):
            out_headers.append(("x-request-id", request_id))
        transport = proto.response_stream(resp.status, out_headers)
        async for chunk in resp.content.iter_any():
            await transport.send_bytes(chunk)
    finally:
        resp.release()
