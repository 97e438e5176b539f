"""`DRAGONFLY_PUBLIC_URL` (config.py `public_base_url`): the base of links in mail. Made from host and
port when unset (a wildcard bind address read as loopback), checked and trimmed when set."""

from __future__ import annotations

from pathlib import Path

import pytest

from dragonfly.config import Settings, public_base_url


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::", 9000, "http://[::1]:9000"),
        ("::1", 80, "http://[::1]:80"),
        ("dragonfly.internal", 8080, "http://dragonfly.internal:8080"),
    ],
)
def test_default_is_made_from_host_and_port(host: str, port: int, expected: str) -> None:
    assert public_base_url("", host, port) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://dragonfly.example.com", "https://dragonfly.example.com"),
        ("https://dragonfly.example.com/", "https://dragonfly.example.com"),
        (" http://10.0.0.5:8000/df/ ", "http://10.0.0.5:8000/df"),
    ],
)
def test_a_given_url_is_kept_without_its_trailing_slash(given: str, expected: str) -> None:
    assert public_base_url(given, "127.0.0.1", 8000) == expected


@pytest.mark.parametrize(
    "given",
    [
        "dragonfly.example.com",
        "ftp://dragonfly.example.com",
        "https://",
        "https://dragonfly.example.com/?a=1",
        "https://dragonfly.example.com/#top",
        "https://user:hunter2@dragonfly.example.com",
    ],
)
def test_anything_else_stops_the_start_without_echoing_it(given: str) -> None:
    with pytest.raises(ValueError, match="DRAGONFLY_PUBLIC_URL") as caught:
        public_base_url(given, "127.0.0.1", 8000)
    assert "hunter2" not in str(caught.value)


def test_from_env_reads_the_variable_and_an_override_wins(tmp_path: Path) -> None:
    env = {"DRAGONFLY_DATA_DIR": str(tmp_path), "DRAGONFLY_SECRET_KEY": "k", "DRAGONFLY_PORT": "9123"}
    assert Settings.from_env(env=env).public_url == "http://127.0.0.1:9123"
    env["DRAGONFLY_PUBLIC_URL"] = "https://df.example.com/"
    assert Settings.from_env(env=env).public_url == "https://df.example.com"
    assert Settings.from_env(env=env, public_url="http://localhost:1").public_url == "http://localhost:1"
    env["DRAGONFLY_PUBLIC_URL"] = "df.example.com"
    with pytest.raises(ValueError):
        Settings.from_env(env=env)
