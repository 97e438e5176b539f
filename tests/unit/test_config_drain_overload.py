"""The drain deadline and the in-flight limit (docs/operator.md, Drain and overload): defaults, and a
value that would disable them by accident stops the process at start."""

from __future__ import annotations

import pytest

from dragonfly.config import Settings


def _settings(**env: str) -> Settings:
    return Settings.from_env(env={"DRAGONFLY_SECRET_KEY": "s", "DRAGONFLY_DATA_DIR": "/nonexistent", **env})


def test_defaults_and_overrides() -> None:
    assert (_settings().drain_timeout_s, _settings().max_inflight) == (25.0, 4096)
    tuned = _settings(DRAGONFLY_DRAIN_TIMEOUT_S="2.5", DRAGONFLY_MAX_INFLIGHT="8")
    assert (tuned.drain_timeout_s, tuned.max_inflight) == (2.5, 8)
    assert _settings(DRAGONFLY_DRAIN_TIMEOUT_S="0").drain_timeout_s == 0  # end everything at once


@pytest.mark.parametrize(
    ("name", "value"),
    [("DRAGONFLY_MAX_INFLIGHT", "0"), ("DRAGONFLY_MAX_INFLIGHT", "-1"), ("DRAGONFLY_DRAIN_TIMEOUT_S", "-1")],
)
def test_a_limit_that_refuses_everything_or_a_negative_deadline_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        _settings(**{name: value})
