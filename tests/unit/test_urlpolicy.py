"""The seller base-URL policy: URL shape and address classification (invariant 7)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from dragonfly.domain.urlpolicy import (
    UrlRefused,
    blocked_reason,
    check_addresses,
    check_base_url,
    is_forbidden_address,
)
from dragonfly.services.upstream_urls import GuardedResolver, RefusedAddress


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved space; the stdlib files it under private too
        ("100.64.0.1", "non_public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
        ("168.63.129.16", "metadata"),  # Azure WireServer (the stdlib calls it global)
        ("192.0.0.192", "metadata"),  # Oracle Cloud, legacy
        ("192.0.0.9", "reserved"),  # IETF protocol assignments (the stdlib calls it global)
        ("fec0::1", "private"),  # IPv6 site-local (the stdlib calls it global)
        ("64:ff9b::7f00:1", "reserved"),  # NAT64 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_blocked_with_a_reason(address: str, reason: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason
    assert is_forbidden_address(address)
    with pytest.raises(UrlRefused):
        check_addresses([address], allow_private=False)
    check_addresses([address], allow_private=True)  # the operator's switch for local demos


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    assert not is_forbidden_address(address)
    check_addresses([address], allow_private=False)


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(UrlRefused, match="private"):
        check_addresses(["8.8.8.8", "10.0.0.7"], allow_private=False)
    with pytest.raises(UrlRefused, match="does not resolve"):
        check_addresses([], allow_private=True)
    assert is_forbidden_address("not-an-ip")


def test_base_url_shape_is_normalised() -> None:
    url = check_base_url(" https://API.Example.com:8443/v1/ ", allow_private=False)
    assert (url.url, url.host, url.port, url.scheme) == (
        "https://api.example.com:8443/v1",
        "api.example.com",
        8443,
        "https",
    )
    assert check_base_url("https://api.example.com", allow_private=False).port == 443
    v6 = check_base_url("http://[::1]:9000/v1", allow_private=True)
    assert v6.url == "http://[::1]:9000/v1" and v6.host == "::1"


@pytest.mark.parametrize(
    "raw",
    [
        "http://api.example.com/v1",  # https required
        "ftp://api.example.com",
        "https://user:pw@api.example.com/v1",
        "https://api.example.com/v1?x=1",
        "https://api.example.com/v1#frag",
        "https:///v1",
        "https://localhost/v1",
        "https://foo.localhost/v1",
        "https://127.0.0.1/v1",
        "https://[::ffff:10.0.0.1]/v1",
        "https://api.example.com:99999/",
        "",
    ],
)
def test_bad_base_urls_are_refused(raw: str) -> None:
    with pytest.raises(UrlRefused):
        check_base_url(raw, allow_private=False)


def test_private_upstreams_allow_http_and_loopback_but_not_credentials() -> None:
    assert check_base_url("http://127.0.0.1:9100/v1", allow_private=True).url == "http://127.0.0.1:9100/v1"
    with pytest.raises(UrlRefused):
        check_base_url("http://u:p@127.0.0.1:9100/v1", allow_private=True)


def test_connect_time_resolver_refuses_loopback_names() -> None:
    async def run(allow_private: bool) -> list[str]:
        resolver = GuardedResolver(allow_private=allow_private)
        try:
            return [r["host"] for r in await resolver.resolve("localhost", 443)]
        finally:
            await resolver.close()

    with pytest.raises(RefusedAddress, match="loopback"):
        asyncio.run(run(False))
    assert "127.0.0.1" in asyncio.run(run(True))
