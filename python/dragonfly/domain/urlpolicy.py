"""Which seller base URLs Dragonfly will ever connect to (invariant 7), as pure functions.

The shape check (`check_base_url`) runs on the URL text; the address check (`blocked_reason`,
`check_addresses`) runs on every address a host resolves to, at registration and again at connect time.
Resolution itself is I/O and lives with the callers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints: named separately so the refusal says what it protects.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud (legacy)
        # Azure's WireServer: a public-looking address every Azure VM reaches, which hands out the VM's
        # extension settings (stdlib: global).
        ipaddress.ip_address("168.63.129.16"),
    }
)
# IETF protocol assignments (RFC 6890): no seller lives here; the stdlib calls most of it global.
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
_LOCAL_HOSTNAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class UrlRefused(ValueError):
    """The URL or one of its addresses is not allowed; the message is safe to show the caller."""


@dataclass(frozen=True, slots=True)
class BaseUrl:
    url: str  # normalised: scheme://host[:port][/path], no trailing slash
    scheme: str
    host: str  # without brackets for IPv6 literals
    port: int


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an upstream may not be at this address, or None for a public unicast address."""
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 address on the wire
            return blocked_reason(ip.ipv4_mapped)
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner)
            if reason is not None:
                return reason
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # fec0::/10: deprecated, still routed
        return "private"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or ip in _IETF_PROTOCOL_ASSIGNMENTS:
        return "reserved"
    if not ip.is_global:
        return "non_public"
    return None


def is_forbidden_address(text: str) -> bool:
    """True when an address (text, IPv6 zone id allowed) is not a public unicast address. Text that is not
    an IP address is forbidden too: callers pass resolved addresses, so anything else is a bug."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return True
    return blocked_reason(ip) is not None


def check_addresses(addresses: list[str], *, allow_private: bool) -> None:
    """Refuse when the host resolved to nothing, or to any address that is not public."""
    if not addresses:
        raise UrlRefused("The base URL's host does not resolve.")
    if allow_private:
        return
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        reason = blocked_reason(ip)
        if reason is not None:
            raise UrlRefused(
                f"The base URL resolves to a {reason.replace('_', '-')} address, which is not allowed."
            )


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_base_url(raw: str, *, allow_private: bool) -> BaseUrl:
    """Validate and normalise a seller base URL's text; addresses are checked separately."""
    text = raw.strip()
    if not text or len(text) > 2048:
        raise UrlRefused("The base URL must be a non-empty URL of at most 2048 characters.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise UrlRefused("The base URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed_schemes:
        raise UrlRefused("The base URL must use https.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The base URL must not carry credentials; send the key as api_key.")
    if parts.query or parts.fragment:
        raise UrlRefused("The base URL must not have a query string or fragment.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UrlRefused("The base URL has no host.")
    if not allow_private:
        if host in _LOCAL_HOSTNAMES or host.endswith(".localhost"):
            raise UrlRefused("The base URL points at a loopback address, which is not allowed.")
        ip = literal_address(host)
        if ip is not None:
            check_addresses([str(ip)], allow_private=False)
    effective_port = port if port is not None else (443 if scheme == "https" else 80)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    return BaseUrl(
        url=urlunsplit((scheme, netloc, path, "", "")), scheme=scheme, host=host, port=effective_port
    )
