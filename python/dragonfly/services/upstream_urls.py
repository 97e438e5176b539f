"""Resolve a seller base URL's host and apply the URL policy to every address (invariant 7).

`resolve` is the one lookup of seller host names, at registration (`validate_base_url`), in the probes'
HTTP client (`GuardedResolver`, workers/probes.py) and in the data plane's (gateway/upstream.py). Each
caller checks the policy on exactly the addresses it got and connects to those addresses, never to the
name again: a name that answers a public address when it is checked and a private one a moment later (DNS
rebinding) cannot slip between the check and the connection. The lookup is `socket.getaddrinfo` on a
worker thread, not `loop.getaddrinfo`, which under uvloop (Granian's loop) is libuv's own resolver: one
resolver in every process, and the one the tests' fake DNS stands in for.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult

from dragonfly.domain.urlpolicy import BaseUrl, UrlRefused, check_addresses, check_base_url, literal_address
from dragonfly.errors import InvalidRequest


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order of preference; none when it does not."""
    if literal_address(host) is not None:
        return [host]
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
    re-resolves to a private address after registration is still refused). aiohttp connects to the
    addresses it returns, which are the ones checked."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve(host, port)
        try:
            check_addresses(addresses, allow_private=self._allow_private)
        except UrlRefused as exc:
            raise RefusedAddress(str(exc)) from None
        results: list[ResolveResult] = []
        for address in addresses:
            ip = literal_address(address.split("%", 1)[0])
            found = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    {
                        "hostname": host,
                        "host": address,
                        "port": port,
                        "family": found,
                        "proto": 0,
                        "flags": socket.AI_NUMERICHOST,
                    }
                )
        if not results:
            raise RefusedAddress("The base URL's host has no address of the family asked for.")
        return results

    async def close(self) -> None:
        return None


def guarded_session(
    *, allow_private: bool, connect_timeout_s: float, total_timeout_s: float
) -> ClientSession:
    """A client session for seller upstreams: policy-checked DNS, no DNS cache, no redirects by default."""
    connector = TCPConnector(resolver=GuardedResolver(allow_private=allow_private), use_dns_cache=False)
    timeout = ClientTimeout(total=total_timeout_s, connect=connect_timeout_s, sock_read=total_timeout_s)
    return ClientSession(connector=connector, timeout=timeout, auto_decompress=True, trust_env=False)
