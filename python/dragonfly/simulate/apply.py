"""`dragonfly simulate apply-weights`: write one strategy's weights to a running control plane through
`PUT /api/admin/routing/weights` (api/handlers/routing_admin.py), as an operator.

The operator's session token is read from an environment variable (`--token-env`, default
`DRAGONFLY_OPERATOR_TOKEN`), never from the command line, and is never printed. Only the four built-in
strategies have global weights; `custom` takes its weights from each profile and is refused here before
any request. A 4xx/5xx answer exits 1 with the server's own error message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from dragonfly.native.market import FEATURES, OPERATOR_STRATEGIES

__all__ = ["WEIGHTS_PATH", "ApplyError", "check_strategy", "parse_weights", "put_weights"]

WEIGHTS_PATH = "/api/admin/routing/weights"


class ApplyError(Exception):
    """The weights could not be written; the message says why (the server's own, for an HTTP error)."""


def parse_weights(text: str) -> dict[str, float]:
    """`price=0.5,latency=0.2,...` as numbers. Names are passed on as given: the server validates them
    (an unknown one comes back as its 400)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ApplyError(f"weights: {part!r} is not name=value (the weights are {', '.join(FEATURES)})")
        try:
            out[name] = float(value)
        except ValueError:
            raise ApplyError(f"weights: {name}={value.strip()!r} is not a number") from None
    if not out:
        raise ApplyError("weights: none given")
    return out


def check_strategy(strategy: str) -> None:
    if strategy == "custom":
        raise ApplyError(
            "strategy custom has no global weights: each custom profile carries its own "
            "(PATCH /api/routing/profiles/:id); apply weights to cost_first, balanced, "
            "reliability_first or quality_first"
        )
    if strategy not in OPERATOR_STRATEGIES:
        raise ApplyError(
            f"unknown strategy {strategy!r} (the operator sets {', '.join(OPERATOR_STRATEGIES)})"
        )


def _server_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
        message = body["error"]["message"]
        if isinstance(message, str) and message:
            return f"{status}: {message}"
    except (ValueError, KeyError, TypeError):
        pass
    text = raw.decode("utf-8", "replace").strip()
    return f"{status}: {text[:500] or 'no body'}"


def put_weights(
    url: str, token: str, strategy: str, weights: dict[str, float], *, timeout_s: float = 30.0
) -> dict[str, Any]:
    """PUT `{strategy: weights}`; the server's answer (every strategy's weights, as GET returns them)."""
    check_strategy(strategy)
    request = urllib.request.Request(
        url.rstrip("/") + WEIGHTS_PATH,
        data=json.dumps({strategy: weights}).encode(),
        method="PUT",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    # A loopback control plane is reached directly, whatever proxy the environment names.
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "::1", "localhost") else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise ApplyError(_server_message(exc.code, exc.read())) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApplyError(f"cannot reach {url}: {reason}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ApplyError(f"the server's answer is not JSON: {raw[:200]!r}") from None
    if not isinstance(answer, dict):
        raise ApplyError(f"unexpected answer: {answer!r}")
    return answer
