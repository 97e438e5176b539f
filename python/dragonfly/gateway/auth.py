"""Buyer-key authentication and IP rules. Keys come from the in-memory snapshot; a key the snapshot does
not know yet (created a moment ago, through another instance or the CLI) is looked up once in the
database before the request is refused (`KeyResolver`)."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from dragonfly.domain.abuse import client_address
from dragonfly.errors import InvalidApiKey, IpNotAllowed
from dragonfly.gateway.http import bearer_token
from dragonfly.gateway.snapshot import KeyInfo, Snapshot
from dragonfly.ids import now_ms
from dragonfly.security.api_keys import PREFIX, KeyHasher
from dragonfly.storage.ports import Executor
from dragonfly.storage.sql.repos.key_lookup import buyer_key_is_live

log = logging.getLogger("dragonfly.gateway.auth")

# Database look-ups for keys the snapshot does not know: at most this many per second per worker (a
# token bucket), and a hash found absent is not looked up again for NEGATIVE_TTL_S. A flood of random
# keys therefore costs the database LOOKUPS_PER_S queries a second, whatever its rate.
LOOKUPS_PER_S = 20.0
LOOKUP_BURST = 40.0
NEGATIVE_TTL_S = 10.0
NEGATIVE_MAX = 10_000


def client_ip(scope: Any, headers: Any, trusted_proxies: tuple[str, ...]) -> str:
    """The socket peer; behind trusted proxies (addresses or CIDR ranges), the right-most
    `X-Forwarded-For` entry that is not one of them — the same rule as the control plane's
    (`domain.abuse.client_address`): a proxy appends the address it saw, so entries left of it are
    whatever the client wrote and never believed."""
    peer = (scope.client or "").rsplit(":", 1)[0].strip("[]")
    if not trusted_proxies:
        return peer
    return client_address(peer, headers.get("x-forwarded-for"), trusted_proxies)


def _normalise(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def key_digest(hasher: KeyHasher, headers: Any) -> str:
    token = bearer_token(headers)
    if token is None or not token.startswith(PREFIX):
        raise InvalidApiKey()
    return hasher.hash(token)


def authenticate(snap: Snapshot, hasher: KeyHasher, headers: Any) -> KeyInfo:
    """From the snapshot alone (no read-through)."""
    # The dict lookup is on an HMAC digest, so timing reveals nothing about the raw key.
    key = snap.keys_by_hash.get(key_digest(hasher, headers))
    if key is None:
        raise InvalidApiKey()
    return key


class KeyResolver:
    """The snapshot first; on a miss, one database look-up (rate-limited, misses cached) and, when the
    key exists, a snapshot reload, so a key is usable on the very next request after it was created."""

    def __init__(
        self,
        hasher: KeyHasher,
        snapshot: Callable[[], Snapshot],
        db: Callable[[], Executor],
        reload: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hasher = hasher
        self._snapshot = snapshot
        self._db = db
        self._reload = reload
        self._clock = clock
        self._tokens = LOOKUP_BURST
        self._refilled = clock()
        self._absent: OrderedDict[str, float] = OrderedDict()  # digest -> until (monotonic)
        self.lookups = 0

    async def authenticate(self, headers: Any) -> KeyInfo:
        digest = key_digest(self._hasher, headers)
        key = self._snapshot().keys_by_hash.get(digest)
        if key is not None:
            return key
        return await self._read_through(digest)

    def _may_look_up(self, digest: str) -> bool:
        now = self._clock()
        until = self._absent.get(digest)
        if until is not None:
            if until > now:
                return False
            del self._absent[digest]
        self._tokens = min(LOOKUP_BURST, self._tokens + (now - self._refilled) * LOOKUPS_PER_S)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _remember_absent(self, digest: str) -> None:
        self._absent[digest] = self._clock() + NEGATIVE_TTL_S
        self._absent.move_to_end(digest)
        while len(self._absent) > NEGATIVE_MAX:
            self._absent.popitem(last=False)

    async def _read_through(self, digest: str) -> KeyInfo:
        if not self._may_look_up(digest):
            raise InvalidApiKey()
        self.lookups += 1
        try:
            live = await buyer_key_is_live(self._db(), digest, now_ms())
        except Exception as exc:  # the snapshot's answer stands
            log.warning("key look-up failed: %s", type(exc).__name__)
            raise InvalidApiKey() from None
        if not live:
            self._remember_absent(digest)
            raise InvalidApiKey()
        await self._reload()
        key = self._snapshot().keys_by_hash.get(digest)
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
