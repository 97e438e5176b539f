"""The one upstream HTTP client of a data-plane worker (aiohttp, keep-alive, bounded timeouts).

Seller base URLs are checked again at connect time (DESIGN.md invariant 7): the resolver refuses
loopback, private, link-local and metadata addresses unless the operator allows private upstreams, so a
DNS answer that changed after registration cannot reach them. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from dragonfly.config import Settings
from dragonfly.domain.urlpolicy import is_forbidden_address


class UpstreamConnectError(Exception):
    """The seller could not be reached (refused, DNS, forbidden address)."""


class UpstreamTimedOut(Exception):
    """The seller did not answer in time."""


class GuardedResolver(AbstractResolver):
    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            results = [r for r in results if not is_forbidden_address(r["host"])]
            if not results:
                raise OSError(f"upstream host {host} resolves only to forbidden addresses")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _literal_forbidden(url: str, allow_private: bool) -> bool:
    if allow_private:
        return False
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the resolver checks it
    return is_forbidden_address(host)


class UpstreamClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,  # concurrency is bounded by admission (per-listing caps), not by the pool
            keepalive_timeout=30,
            resolver=GuardedResolver(self._settings.allow_private_upstreams),
            ttl_dns_cache=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self._settings.upstream_total_timeout_s,
                connect=self._settings.upstream_connect_timeout_s,
                sock_read=self._settings.upstream_read_timeout_s,
            ),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream client not started")
        return self._session

    async def post(self, url: str, api_key: str, body: bytes, accept_sse: bool) -> aiohttp.ClientResponse:
        """Send the request and return once response headers arrived. The caller releases it."""
        if _literal_forbidden(url, self._settings.allow_private_upstreams):
            raise UpstreamConnectError("upstream address is not allowed")
        headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "accept": "text/event-stream" if accept_sse else "application/json",
            "user-agent": "dragonfly-gateway",
        }
        try:
            return await self.session.post(url, data=body, headers=headers, allow_redirects=False)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimedOut("upstream did not answer in time") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientOSError, OSError) as exc:
            raise UpstreamConnectError(type(exc).__name__) from None

    async def request(self, method: str, url: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.request(method, url, allow_redirects=False, **kw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
