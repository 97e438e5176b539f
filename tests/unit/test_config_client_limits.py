"""The client-connection limits (docs/operator.md, Client connections): their defaults, how `serve` hands
them to Granian, and values Granian cannot take stop the process at start."""

from __future__ import annotations

import dataclasses

import pytest

from dragonfly.cli.serve import gateway_command, granian_backpressure
from dragonfly.config import Settings


def _settings(**env: str) -> Settings:
    return Settings.from_env(env={"DRAGONFLY_SECRET_KEY": "s", "DRAGONFLY_DATA_DIR": "/nonexistent", **env})


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_serve_runs_granian_http1_only_with_the_header_deadline_and_connection_cap() -> None:
    default = _settings()
    assert (default.http_header_timeout_s, default.http_body_timeout_s, default.max_connections) == (
        10,
        30,
        0,
    )
    argv = gateway_command(default)
    assert _flag(argv, "--http") == "1"  # `auto` gives a silent connection no deadline at all
    assert _flag(argv, "--http1-header-read-timeout") == "10000"
    assert _flag(argv, "--http1-buffer-size") == "32768"
    assert _flag(argv, "--backpressure") == "8192"  # max(4096 / workers, 2 x max_inflight)
    tuned = _settings(
        DRAGONFLY_HTTP_HEADER_TIMEOUT_S="2.5",
        DRAGONFLY_HTTP_BODY_TIMEOUT_S="5",
        DRAGONFLY_MAX_CONNECTIONS="300",
    )
    argv = gateway_command(tuned)
    assert _flag(argv, "--http1-header-read-timeout") == "2500"
    assert _flag(argv, "--backpressure") == "300" and tuned.http_body_timeout_s == 5
    assert granian_backpressure(dataclasses.replace(default, workers=4, max_inflight=100)) == 1024


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DRAGONFLY_HTTP_HEADER_TIMEOUT_S", "0"),
        ("DRAGONFLY_HTTP_HEADER_TIMEOUT_S", "61"),  # Granian takes at most 60,000 ms
        ("DRAGONFLY_HTTP_BODY_TIMEOUT_S", "0"),
        ("DRAGONFLY_MAX_CONNECTIONS", "-1"),
    ],
)
def test_a_deadline_or_cap_granian_cannot_take_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        _settings(**{name: value})
