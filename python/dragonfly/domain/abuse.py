"""Who a request on the account surface counts against (pure; services/abuse.py and services/trial.py
apply it): the client address behind trusted proxies, the subject a per-address limit counts (an IPv6
client by its /64, which one subscriber usually holds whole), and the identity behind an email address for
the one-time trial credit."""

from __future__ import annotations

import functools
import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Mail providers where dots in the local part are ignored, and the name their addresses are counted under.
_DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def parse_address(text: str | None) -> IpAddress | None:
    """An IP address as a socket or a proxy writes it (`[::1]`, IPv4-mapped IPv6 read as IPv4); None when
    it is not one."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@functools.lru_cache(maxsize=16)
def networks(items: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """Addresses or CIDR ranges (checked at start by config.parse_networks)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def listed(addr: IpAddress | None, items: tuple[str, ...]) -> bool:
    return addr is not None and any(addr.version == net.version and addr in net for net in networks(items))


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The client of a request: the socket peer, unless the peer is a trusted proxy; then the right-most
    `X-Forwarded-For` entry that is not a trusted proxy (proxies append the address they saw, so the entries
    left of it are whatever the client wrote). An entry that is not an address stops the walk at the last
    trusted hop."""
    addr = parse_address(peer)
    if addr is None:
        return peer or ""
    if not forwarded_for or not listed(addr, trusted):
        return str(addr)
    for hop in reversed(forwarded_for.split(",")):
        parsed = parse_address(hop)
        if parsed is None:
            break
        addr = parsed
        if not listed(addr, trusted):
            break
    return str(addr)


def address_subject(client: str) -> str:
    """What a per-address limit counts: the address (IPv4) or its /64 (IPv6); an unparsable value as is,
    bounded."""
    addr = parse_address(client)
    if addr is None:
        return client[:64] or "unknown"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


def limit_subject(client: str, exempt: tuple[str, ...]) -> str | None:
    """`address_subject`, or None when the client's address is exempt from the per-address limits."""
    return None if listed(parse_address(client), exempt) else address_subject(client)


def email_identity(email: str) -> str:
    """The mailbox behind an address, for the one-time trial: lower case, a `+tag` dropped from the local
    part, and at gmail.com (and googlemail.com) the dots too: `A.da+x@GoogleMail.com` -> `ada@gmail.com`."""
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _DOTLESS:
        local, domain = local.replace(".", ""), _DOTLESS[domain]
    return f"{local}@{domain}"


def email_domain(email: str) -> str:
    return email_identity(email).rpartition("@")[2]
