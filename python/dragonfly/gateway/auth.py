"""Buyer-key authentication and IP rules, from the in-memory snapshot only."""

from __future__ import annotations

import ipaddress
from typing import Any

from dragonfly.errors import InvalidApiKey, IpNotAllowed
from dragonfly.gateway.http import bearer_token
from dragonfly.gateway.snapshot import KeyInfo, Snapshot
from dragonfly.security.api_keys import PREFIX, KeyHasher


def client_ip(scope: Any, headers: Any, trusted_proxies: tuple[str, ...]) -> str:
    """The socket peer; `X-Forwarded-For` only when the peer is a configured trusted proxy."""
    peer = (scope.client or "").rsplit(":", 1)[0].strip("[]")
    if trusted_proxies and peer in trusted_proxies:
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return peer


def _normalise(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def authenticate(snap: Snapshot, hasher: KeyHasher, headers: Any) -> KeyInfo:
    token = bearer_token(headers)
    if token is None or not token.startswith(PREFIX):
        raise InvalidApiKey()
    # The dict lookup is on an HMAC digest, so timing reveals nothing about the raw key.
    key = snap.keys_by_hash.get(hasher.hash(token))
    if key is None:
        raise InvalidApiKey()
    return key


def check_ip(key: KeyInfo, ip: str) -> None:
    if not key.ip_allow and not key.ip_deny:
        return
    addr = _normalise(ip)
    if addr is None:
        raise IpNotAllowed("Your IP address is not allowed to use this key.")
    if any(addr in net for net in key.ip_deny):
        raise IpNotAllowed("Your IP address is not allowed to use this key.")
    if key.ip_allow and not any(addr in net for net in key.ip_allow):
        raise IpNotAllowed("Your IP address is not allowed to use this key.")
