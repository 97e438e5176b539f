"""Resolve a seller base URL's host and apply the URL policy to every address (registration time).

The same policy runs again at connect time inside the probe's HTTP client (see workers/probes.py), so a
host that re-resolves to a private address later is still refused.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import ClientSession, ClientTimeout, TCPConnector, ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from dragonfly.domain.urlpolicy import BaseUrl, UrlRefused, check_addresses, check_base_url, literal_address
from dragonfly.errors import InvalidRequest


async def resolve(host: str, port: int) -> list[str]:
    if literal_address(host) is not None:
        return [host]
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


async def validate_base_url(raw: str, *, allow_private: bool, param: str = "base_url") -> BaseUrl:
    """The normalised URL, or 400 invalid_request saying why it is refused."""
    try:
        url = check_base_url(raw, allow_private=allow_private)
        check_addresses(await resolve(url.host, url.port), allow_private=allow_private)
    except UrlRefused as exc:
        raise InvalidRequest(str(exc), param=param) from None
    return url


class RefusedAddress(OSError):
    """Raised inside the HTTP client when a host resolves to an address the policy refuses."""


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that applies the URL policy to every address at connect time (so a host that
    re-resolves to a private address after registration is still refused)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        try:
            check_addresses([r["host"] for r in results], allow_private=self._allow_private)
        except UrlRefused as exc:
            raise RefusedAddress(str(exc)) from None
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(
    *, allow_private: bool, connect_timeout_s: float, total_timeout_s: float
) -> ClientSession:
    """A client session for seller upstreams: policy-checked DNS, no DNS cache, no redirects by default."""
    connector = TCPConnector(resolver=GuardedResolver(allow_private=allow_private), use_dns_cache=False)
    timeout = ClientTimeout(total=total_timeout_s, connect=connect_timeout_s, sock_read=total_timeout_s)
    return ClientSession(connector=connector, timeout=timeout, auto_decompress=True, trust_env=False)
