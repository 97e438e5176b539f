"""Through `dragonfly serve`'s public port, the control plane counts its abuse limits by the client the
data plane saw: `X-Forwarded-For` believed from the data plane's trusted proxy, replaced (never passed on
as the client wrote it) towards the control plane (docs/operator.md, "Abuse limits")."""

from __future__ import annotations

from pathlib import Path

import requests
from support.market import market_settings, start_serve
from support.processes import ProcessGroup


def test_the_control_plane_limits_the_client_the_data_plane_saw(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    settings = market_settings(f"sqlite:///{tmp_path / 'df.db'}", tmp_path / "data")
    origin = start_serve(
        processes,
        settings,
        extra_env={"DRAGONFLY_TRUSTED_PROXIES": "127.0.0.1", "DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS": "1/1h"},
    )

    def signup(email: str, forwarded: str) -> requests.Response:
        body = {"email": email, "password": "correct horse battery"}
        return requests.post(
            f"{origin}/api/auth/signup", json=body, headers={"x-forwarded-for": forwarded}, timeout=30
        )

    assert signup("one@example.com", "203.0.113.50").status_code == 201
    again = signup("two@example.com", "203.0.113.50")
    assert again.status_code == 429, again.text
    assert again.json()["error"]["code"] == "rate_limited"
    assert int(again.headers["retry-after"]) > 3000 and again.headers["x-request-id"]
    # Another client behind the same proxy is another address. Of a chain, the data plane's reading (the
    # right-most entry its trusted proxy did not write itself, docs/operator.md `DRAGONFLY_TRUSTED_PROXIES`)
    # is what the control plane counts: an address the client put in front of its own does not evade.
    assert signup("three@example.com", "203.0.113.51").status_code == 201
    spoofed = signup("four@example.com", "203.0.113.52, 203.0.113.50")
    assert spoofed.status_code == 429, spoofed.text
