"""The pure parts of the abuse limits (docs/operator.md, "Abuse limits"): the settings, who a request counts
against (client address behind trusted proxies, IPv6 by its /64, the mailbox behind an email), and the
in-process counter's windows."""

from __future__ import annotations

import pytest

from dragonfly.config import OFF, Rate, Settings, parse_rate
from dragonfly.domain.abuse import (
    address_subject,
    client_address,
    email_domain,
    email_identity,
    limit_subject,
)
from dragonfly.gateway.auth import client_ip
from dragonfly.storage.state.limits import MemoryRateLimiter


def _settings(**env: str) -> Settings:
    return Settings.from_env(env={"DRAGONFLY_SECRET_KEY": "s", "DRAGONFLY_DATA_DIR": "/nonexistent", **env})


def test_defaults_are_the_documented_ones_and_each_is_configurable() -> None:
    s = _settings()
    assert (s.limit_login_per_address, s.limit_login_failures_per_email) == (Rate(20, 60), Rate(5, 900))
    assert (s.limit_signup_per_address, s.limit_verify_per_address) == (Rate(5, 3600), Rate(20, 60))
    assert s.limit_auth_failures_per_address == Rate(30, 60)
    assert s.limit_mgmt_key_new_addresses == Rate(10, 3600)
    assert s.limit_exempt_addresses == s.control_trusted_proxies == ("127.0.0.1", "::1")
    assert (s.trial_per_address_per_day, s.trial_per_domain_per_day) == (3, 0)
    assert s.trial_daily_total_micros == 100_000_000
    tuned = _settings(
        DRAGONFLY_LIMIT_LOGIN_PER_ADDRESS="3/h",
        DRAGONFLY_LIMIT_LOGIN_FAILURES_PER_EMAIL="10/30m",
        DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS="off",
        DRAGONFLY_LIMIT_VERIFY_PER_ADDRESS="0",
        DRAGONFLY_LIMIT_AUTH_FAILURES_PER_ADDRESS="7/90",
        DRAGONFLY_LIMIT_MGMT_KEY_NEW_ADDRESSES="2/1d",
        DRAGONFLY_LIMIT_EXEMPT_ADDRESSES="",
        DRAGONFLY_CONTROL_TRUSTED_PROXIES="10.0.0.0/8, fd00::/8",
        DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY="1",
        DRAGONFLY_TRIAL_PER_DOMAIN_PER_DAY="50",
        DRAGONFLY_TRIAL_DAILY_TOTAL_MICROS="0",
    )
    assert (tuned.limit_login_per_address, tuned.limit_login_failures_per_email) == (
        Rate(3, 3600),
        Rate(10, 1800),
    )
    assert tuned.limit_signup_per_address == tuned.limit_verify_per_address == OFF
    assert tuned.limit_auth_failures_per_address == Rate(7, 90)
    assert tuned.limit_mgmt_key_new_addresses == Rate(2, 86400)
    assert tuned.limit_exempt_addresses == ()
    assert tuned.control_trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    assert (tuned.trial_per_address_per_day, tuned.trial_per_domain_per_day) == (1, 50)
    assert tuned.trial_daily_total_micros == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRAGONFLY_LIMIT_LOGIN_PER_ADDRESS", "20"),
        ("DRAGONFLY_LIMIT_LOGIN_PER_ADDRESS", "0/1m"),
        ("DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS", "5/0m"),
        ("DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS", "5/1w"),
        ("DRAGONFLY_LIMIT_VERIFY_PER_ADDRESS", "5/30d"),
        ("DRAGONFLY_CONTROL_TRUSTED_PROXIES", "proxy.internal"),
        ("DRAGONFLY_LIMIT_EXEMPT_ADDRESSES", "10.0.0.0/33"),
        ("DRAGONFLY_TRUSTED_PROXIES", "nginx"),
        ("DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY", "-1"),
    ],
)
def test_a_malformed_limit_stops_the_start_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        _settings(**{name: value})


def test_rates_read_as_written() -> None:
    assert parse_rate("X", "5/15m") == Rate(5, 900)
    assert parse_rate("X", " 20 / 60s ") == Rate(20, 60)
    assert parse_rate("X", "3/h") == Rate(3, 3600)
    assert parse_rate("X", "1/2d") == Rate(1, 172800)
    assert parse_rate("X", "OFF") == OFF and not OFF.limit


def test_forwarded_for_is_believed_only_from_trusted_peers_and_read_from_the_right() -> None:
    loopback = ("127.0.0.1", "::1")
    # A client talking directly: its own header is ignored.
    assert client_address("198.51.100.7", "203.0.113.1", loopback) == "198.51.100.7"
    # The data plane on loopback forwards the client it saw.
    assert client_address("127.0.0.1", "203.0.113.1", loopback) == "203.0.113.1"
    assert client_address("::1", "2001:db8::5", loopback) == "2001:db8::5"
    # A proxy that appends: what the client wrote on the left is not believed.
    chain = ("10.0.0.0/8",)
    assert client_address("10.1.2.3", "6.6.6.6, 203.0.113.9, 10.9.9.9", chain) == "203.0.113.9"
    # Every hop trusted: the left-most one; garbage stops the walk at the last trusted hop.
    assert client_address("10.1.2.3", "10.0.0.5", chain) == "10.0.0.5"
    assert client_address("10.1.2.3", "203.0.113.9, not-an-ip", chain) == "10.1.2.3"
    # IPv4-mapped IPv6 peers are IPv4; no header means the peer.
    assert client_address("::ffff:127.0.0.1", "203.0.113.2", loopback) == "203.0.113.2"
    assert client_address("127.0.0.1", None, loopback) == "127.0.0.1"


def test_the_data_plane_reads_the_client_by_the_same_rule() -> None:
    """Key IP lists and the address the data plane forwards to the control plane: the right-most entry a
    trusted proxy (address or range) did not write, never the client's own left-most claim."""

    class Scope:
        def __init__(self, client: str) -> None:
            self.client = client

    headers = {"x-forwarded-for": "10.0.0.1, 203.0.113.9"}  # the client claimed 10.0.0.1
    assert client_ip(Scope("127.0.0.1:5123"), headers, ()) == "127.0.0.1"  # no proxy trusted
    assert client_ip(Scope("127.0.0.1:5123"), headers, ("127.0.0.1",)) == "203.0.113.9"
    assert client_ip(Scope("172.28.0.10:80"), headers, ("172.28.0.0/16",)) == "203.0.113.9"
    assert client_ip(Scope("198.51.100.1:80"), headers, ("172.28.0.0/16",)) == "198.51.100.1"
    assert client_ip(Scope("[::1]:443"), {"x-forwarded-for": "2001:db8::7"}, ("::1",)) == "2001:db8::7"
    assert _settings(DRAGONFLY_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1").trusted_proxies == (
        "10.0.0.0/8",
        "127.0.0.1",
    )


def test_per_address_limits_count_ipv6_by_its_64_and_skip_exempt_addresses() -> None:
    assert (
        address_subject("2001:db8:1:2:aaaa::1")
        == address_subject("2001:db8:1:2:bbbb::9")
        == "2001:db8:1:2::/64"
    )
    assert address_subject("2001:db8:1:3::1") != address_subject("2001:db8:1:2::1")
    assert address_subject("::ffff:203.0.113.4") == "203.0.113.4"
    assert limit_subject("127.0.0.1", ("127.0.0.1", "::1")) is None
    assert limit_subject("10.2.3.4", ("10.0.0.0/8",)) is None
    assert limit_subject("203.0.113.4", ("127.0.0.1", "::1")) == "203.0.113.4"


def test_one_mailbox_is_one_identity() -> None:
    assert email_identity("Ada+promo@Example.com") == email_identity("ada@example.com") == "ada@example.com"
    assert email_identity("a.d.a+x@googlemail.com") == email_identity("ADA@gmail.com") == "ada@gmail.com"
    assert email_identity("a.da@example.com") == "a.da@example.com"  # dots matter elsewhere
    assert email_domain("x+y@Mail.Example.org") == "mail.example.org"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_window_counts_to_its_limit_then_refuses_until_it_closes() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(3):
        assert (await limiter.take("k", 3, 60_000)).allowed
    refused = await limiter.take("k", 3, 60_000)
    assert not refused.allowed and refused.retry_after_ms == 60_000 and refused.retry_after_s == 60
    assert not (await limiter.check("k", 3, 60_000)).allowed
    clock.now += 59.5
    assert (await limiter.take("k", 3, 60_000)).retry_after_s == 1  # rounded up, never 0
    clock.now += 0.5
    assert (await limiter.check("k", 3, 60_000)).allowed
    assert (await limiter.take("k", 3, 60_000)).allowed  # a new window
    await limiter.clear("k")
    assert (await limiter.check("k", 1, 60_000)).allowed


async def test_memory_counter_stays_bounded() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=100)
    for i in range(1000):
        await limiter.take(f"k{i}", 1, 60_000)
    assert len(limiter._windows) <= 100
    assert not (await limiter.check("k999", 1, 60_000)).allowed  # the newest windows are kept
