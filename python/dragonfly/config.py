"""Settings, read once from `DRAGONFLY_*` environment variables (CLI flags override them).

Nothing else in the package reads the environment: components receive a `Settings` instance.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

_TRUE = {"1", "true", "yes", "on"}


def _env_bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    return default if raw is None else raw.strip().lower() in _TRUE


class Rate(NamedTuple):
    """At most `limit` events per `window_s` seconds; `limit == 0` is no limit. Written `5/15m`."""

    limit: int
    window_s: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_s}s" if self.limit else "off"


OFF = Rate(0, 0)
_RATE = re.compile(r"^(\d+)\s*/\s*(\d*)\s*([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LOOPBACK = ("127.0.0.1", "::1")
# Defaults of the abuse limits (Settings.limit_*).
LOGIN_PER_ADDRESS = Rate(20, 60)
LOGIN_FAILURES_PER_EMAIL = Rate(5, 900)
SIGNUP_PER_ADDRESS = Rate(5, 3600)
VERIFY_PER_ADDRESS = Rate(20, 60)
AUTH_FAILURES_PER_ADDRESS = Rate(30, 60)
MGMT_KEY_NEW_ADDRESSES = Rate(10, 3600)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Internal port of the control plane behind the public data plane; 0 = pick a free one.
    control_port: int = 0
    # Where people reach the product (the base of links in mail: `<public_url>/verify`). Empty: made from
    # host and port (`resolved`); `serve` hands its own to the control plane, whose port is internal.
    public_url: str = ""
    data_dir: str = "var"
    database_url: str = ""
    redis_url: str | None = None
    mail_backend: str = "log"  # log | file | smtp
    mail_dir: str = ""
    smtp_url: str | None = None
    allow_private_upstreams: bool = False
    demo: bool = False
    secret_key: str = ""
    # Economics.
    platform_fee_bps: int = 1000  # 10 % of the price goes to the platform
    reserve_bps: int = 500  # 5 % of the seller payout is held in reserve
    earnings_lock_s: int = 3600
    settlement_period_s: float = 60.0  # how often the control plane releases matured seller earnings
    # The reserve share of earnings is released to available after this many days (a decimal number),
    # unless a review of the seller's was upheld within them (domain/payouts.py `reserve_paused`).
    reserve_release_days: float = 30.0
    pricing_period_s: float = 60.0  # how often the control plane re-prices listings from the market
    usage_audit_period_s: float = 15.0  # how often the market-relative usage audit reads new trades
    trial_credit_micros: int = 100_000  # $0.10
    # Abuse limits on the account surface (services/abuse.py, services/trial.py; docs/operator.md "Abuse
    # limits"): per client address (IPv6 by its /64) unless the address is exempt, and per email for
    # failed logins (then 429 until the window ends); `OFF` = no limit. Login attempts are counted before
    # the password is checked; auth failures are bad credentials on the authenticated routes.
    limit_login_per_address: Rate = LOGIN_PER_ADDRESS
    limit_login_failures_per_email: Rate = LOGIN_FAILURES_PER_EMAIL
    limit_signup_per_address: Rate = SIGNUP_PER_ADDRESS
    limit_verify_per_address: Rate = VERIFY_PER_ADDRESS
    limit_auth_failures_per_address: Rate = AUTH_FAILURES_PER_ADDRESS
    # New client addresses a management key may be used from per window (an address stays known for the
    # window after its first use): a leaked key cannot be spread over a botnet at full speed.
    limit_mgmt_key_new_addresses: Rate = MGMT_KEY_NEW_ADDRESSES
    # Client addresses (and CIDR ranges) the per-address limits and the per-address trial quota skip.
    limit_exempt_addresses: tuple[str, ...] = _LOOPBACK
    # Peers (addresses or CIDR ranges) whose `X-Forwarded-For` the control plane believes: the data plane
    # of `serve` (loopback) and, in production, the proxy in front of the control plane.
    control_trusted_proxies: tuple[str, ...] = _LOOPBACK
    # The trial credit's daily quotas (UTC days; 0 = no limit): grants per signup address, grants per
    # email domain, micro-USD granted platform-wide.
    trial_per_address_per_day: int = 3
    trial_per_domain_per_day: int = 0
    trial_daily_total_micros: int = 100_000_000  # $100
    # Sessions.
    jwt_ttl_s: int = 3600
    # Data plane.
    max_body_bytes: int = 4 * 1024 * 1024
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 60.0
    upstream_total_timeout_s: float = 600.0
    snapshot_poll_s: float = 0.5
    # A hold/concurrency lease lapses after this long, so a crashed instance cannot keep money or
    # slots reserved; it must outlive the longest upstream call (upstream_total_timeout_s).
    hold_lease_s: float = 900.0
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)
    # Overload (gateway/app.py): past this many requests in flight in one data-plane worker, the next is
    # answered 503 `service_unavailable` with `retry-after` instead of queued (/healthz, /metrics exempt).
    max_inflight: int = 4096
    # Drain (gateway/drain.py): on SIGTERM a worker stops taking requests and gives those in flight this
    # long to finish; then it ends the rest (streams with an error event), settles them and exits.
    drain_timeout_s: float = 25.0
    # Hostile clients (`serve` hands the first and third to Granian, which enforces them; the data plane
    # itself enforces the second): the whole request head must arrive within `http_header_timeout_s` of
    # the connection opening or of the previous answer (so it is also the idle keep-alive limit), the
    # whole body within `http_body_timeout_s` (408), and each worker holds at most `max_connections`
    # open connections (Granian's --backpressure; 0: max(4096 / workers, 2 x max_inflight)), the next
    # ones waiting in the accept queue.
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    max_connections: int = 0
    workers: int = 1
    log_level: str = "info"
    # `json` (one object per line) or `text` (`time LEVEL logger message`), for every dragonfly process.
    log_format: str = "json"
    # /metrics on the public port: with a token, only `Authorization: Bearer <token>`; without, only
    # loopback clients. The multiprocess directory (`PROMETHEUS_MULTIPROC_DIR`, which `serve` sets for
    # its children) is where each Granian worker's values live so that any worker answers for all.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_dir: str | None = None
    # Crash-test hook: the data plane calls os._exit at this named point of a trade (tests only).
    failpoint: str | None = None
    # Listing health (domain/health.py): when live failures degrade and suspend a contract.
    health_degrade_after: int = 5  # failed calls in a row: active -> degraded
    health_suspend_after: int = 10  # failed calls in a row (the same streak): degraded -> suspended
    health_recover_after: int = 5  # successful calls in a row: degraded -> active
    health_window_s: float = 30.0  # success-rate window
    health_min_requests: int = 20  # outcomes in the window before the success-rate rule applies
    health_rate_margin: float = 0.2  # degrade when this far below the model's other listings' rate
    health_base_ejection_s: float = 30.0  # first suspension; degraded listings are re-probed after it
    health_max_ejection_s: float = 300.0
    health_max_ejected_pct: float = 50.0  # never suspend more of a model's routable listings at once

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        e = dict(os.environ if env is None else env)
        base = cls()
        data_dir = e.get("DRAGONFLY_DATA_DIR", base.data_dir)
        values: dict[str, Any] = {
            "host": e.get("DRAGONFLY_HOST", base.host),
            "port": int(e.get("DRAGONFLY_PORT", base.port)),
            "control_port": int(e.get("DRAGONFLY_CONTROL_PORT", base.control_port)),
            "public_url": e.get("DRAGONFLY_PUBLIC_URL", base.public_url),
            "data_dir": data_dir,
            "database_url": e.get("DRAGONFLY_DATABASE_URL", ""),
            "redis_url": e.get("DRAGONFLY_REDIS_URL") or None,
            "mail_backend": e.get("DRAGONFLY_MAIL_BACKEND", base.mail_backend),
            "mail_dir": e.get("DRAGONFLY_MAIL_DIR", ""),
            "smtp_url": e.get("DRAGONFLY_SMTP_URL") or None,
            "allow_private_upstreams": _env_bool(e, "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS", False),
            "demo": _env_bool(e, "DRAGONFLY_DEMO", False),
            "secret_key": e.get("DRAGONFLY_SECRET_KEY", ""),
            "platform_fee_bps": int(e.get("DRAGONFLY_PLATFORM_FEE_BPS", base.platform_fee_bps)),
            "reserve_bps": int(e.get("DRAGONFLY_RESERVE_BPS", base.reserve_bps)),
            "earnings_lock_s": int(e.get("DRAGONFLY_EARNINGS_LOCK_S", base.earnings_lock_s)),
            "settlement_period_s": float(e.get("DRAGONFLY_SETTLEMENT_PERIOD_S", base.settlement_period_s)),
            "reserve_release_days": float(e.get("DRAGONFLY_RESERVE_RELEASE_DAYS", base.reserve_release_days)),
            "pricing_period_s": float(e.get("DRAGONFLY_PRICING_PERIOD_S", base.pricing_period_s)),
            "usage_audit_period_s": float(e.get("DRAGONFLY_USAGE_AUDIT_PERIOD_S", base.usage_audit_period_s)),
            "trial_credit_micros": int(e.get("DRAGONFLY_TRIAL_CREDIT_MICROS", base.trial_credit_micros)),
            "jwt_ttl_s": int(e.get("DRAGONFLY_JWT_TTL_S", base.jwt_ttl_s)),
            "max_body_bytes": int(e.get("DRAGONFLY_MAX_BODY_BYTES", base.max_body_bytes)),
            "upstream_connect_timeout_s": float(
                e.get("DRAGONFLY_UPSTREAM_CONNECT_TIMEOUT_S", base.upstream_connect_timeout_s)
            ),
            "upstream_read_timeout_s": float(
                e.get("DRAGONFLY_UPSTREAM_READ_TIMEOUT_S", base.upstream_read_timeout_s)
            ),
            "hold_lease_s": float(e.get("DRAGONFLY_HOLD_LEASE_S", base.hold_lease_s)),
            "trusted_proxies": parse_networks(
                "DRAGONFLY_TRUSTED_PROXIES", e.get("DRAGONFLY_TRUSTED_PROXIES", "")
            ),
            "max_inflight": _at_least(
                1, "DRAGONFLY_MAX_INFLIGHT", int(e.get("DRAGONFLY_MAX_INFLIGHT", base.max_inflight))
            ),
            "http_header_timeout_s": _between(
                0.001,
                60.0,
                "DRAGONFLY_HTTP_HEADER_TIMEOUT_S",
                float(e.get("DRAGONFLY_HTTP_HEADER_TIMEOUT_S", base.http_header_timeout_s)),
            ),
            "http_body_timeout_s": _at_least(
                0.001,
                "DRAGONFLY_HTTP_BODY_TIMEOUT_S",
                float(e.get("DRAGONFLY_HTTP_BODY_TIMEOUT_S", base.http_body_timeout_s)),
            ),
            "max_connections": _at_least(
                0, "DRAGONFLY_MAX_CONNECTIONS", int(e.get("DRAGONFLY_MAX_CONNECTIONS", base.max_connections))
            ),
            "drain_timeout_s": _at_least(
                0,
                "DRAGONFLY_DRAIN_TIMEOUT_S",
                float(e.get("DRAGONFLY_DRAIN_TIMEOUT_S", base.drain_timeout_s)),
            ),
            "workers": int(e.get("DRAGONFLY_WORKERS", base.workers)),
            "log_level": e.get("DRAGONFLY_LOG_LEVEL", base.log_level),
            "log_format": _log_format(e.get("DRAGONFLY_LOG_FORMAT", base.log_format)),
            "metrics_token": e.get("DRAGONFLY_METRICS_TOKEN") or None,
            "metrics_dir": e.get("PROMETHEUS_MULTIPROC_DIR") or None,
            "failpoint": e.get("DRAGONFLY_FAILPOINT") or None,
            **_health_env(e, base),
            **_abuse_env(e, base),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(base, **values).resolved()

    def resolved(self) -> Settings:
        """Fill derived defaults: database URL and mail dir under the data dir, a persistent secret, the
        public URL from host and port."""
        out = replace(self, public_url=public_base_url(self.public_url, self.host, self.port))
        if not out.database_url:
            out = replace(out, database_url=f"sqlite:///{Path(out.data_dir) / 'dragonfly.db'}")
        if not out.mail_dir:
            out = replace(out, mail_dir=str(Path(out.data_dir) / "mail"))
        if not out.secret_key:
            out = replace(out, secret_key=_load_or_create_secret(Path(out.data_dir) / "secret.key"))
        return out

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite:") and not self.redis_url


_HEALTH_ENV = {
    "health_degrade_after": "DRAGONFLY_HEALTH_DEGRADE_AFTER",
    "health_suspend_after": "DRAGONFLY_HEALTH_SUSPEND_AFTER",
    "health_recover_after": "DRAGONFLY_HEALTH_RECOVER_AFTER",
    "health_window_s": "DRAGONFLY_HEALTH_WINDOW_S",
    "health_min_requests": "DRAGONFLY_HEALTH_MIN_REQUESTS",
    "health_rate_margin": "DRAGONFLY_HEALTH_RATE_MARGIN",
    "health_base_ejection_s": "DRAGONFLY_HEALTH_BASE_EJECTION_S",
    "health_max_ejection_s": "DRAGONFLY_HEALTH_MAX_EJECTION_S",
    "health_max_ejected_pct": "DRAGONFLY_HEALTH_MAX_EJECTED_PCT",
}


_N = TypeVar("_N", int, float)


def _at_least(low: _N, name: str, value: _N) -> _N:
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}")
    return value


def _between(low: float, high: float, name: str, value: float) -> float:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, not {value}")
    return value


def public_base_url(raw: str, host: str, port: int) -> str:
    """`DRAGONFLY_PUBLIC_URL` checked and without a trailing slash (an http(s) URL, a path prefix allowed,
    no query or fragment); when empty, `http://<host>:<port>` with a wildcard bind address read as
    loopback. Raises ValueError (the process stops at start) for anything else."""
    if not raw.strip():
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return f"http://{host}:{port}"
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        shown = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{shown}:{port}"
    url = urlsplit(raw.strip())
    if (
        url.scheme not in ("http", "https")
        or not url.hostname
        or "@" in url.netloc
        or url.query
        or url.fragment
    ):
        # The value is not echoed: a mistyped URL may carry a password.
        raise ValueError(
            "DRAGONFLY_PUBLIC_URL must be an http:// or https:// URL without user, query or fragment,"
            " such as https://dragonfly.example.com"
        )
    return raw.strip().rstrip("/")


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("json", "text"):
        raise ValueError(f"DRAGONFLY_LOG_FORMAT must be json or text, not {raw!r}")
    return value


def _health_env(env: dict[str, str], base: Settings) -> dict[str, Any]:
    """The listing-health thresholds, each of the type of its default."""
    out: dict[str, Any] = {}
    for name, var in _HEALTH_ENV.items():
        default = getattr(base, name)
        out[name] = type(default)(env.get(var, default))
    return out


def parse_rate(name: str, raw: str) -> Rate:
    """`N/W`: at most N events per window W, a number with an optional unit s, m, h or d (`5/15m`,
    `20/60`, `3/h`); `0` or `off` is no limit. Anything else raises ValueError (the process stops)."""
    text = raw.strip().lower()
    if text in ("0", "off"):
        return OFF
    match = _RATE.match(text)
    window_s = int(match.group(2) or 1) * _UNIT_S[match.group(3)] if match else 0
    if match is None or int(match.group(1)) < 1 or not 1 <= window_s <= 7 * 86400:
        raise ValueError(f"{name} must be N/window (such as 5/15m, 20/60s) or off, not {raw!r}")
    return Rate(int(match.group(1)), window_s)


def parse_networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR ranges, each checked (ValueError names the variable)."""
    out = tuple(p.strip() for p in raw.split(",") if p.strip())
    for item in out:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not an IP address or CIDR range") from None
    return out


_ABUSE_RATES = {
    "limit_login_per_address": "DRAGONFLY_LIMIT_LOGIN_PER_ADDRESS",
    "limit_login_failures_per_email": "DRAGONFLY_LIMIT_LOGIN_FAILURES_PER_EMAIL",
    "limit_signup_per_address": "DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS",
    "limit_verify_per_address": "DRAGONFLY_LIMIT_VERIFY_PER_ADDRESS",
    "limit_auth_failures_per_address": "DRAGONFLY_LIMIT_AUTH_FAILURES_PER_ADDRESS",
    "limit_mgmt_key_new_addresses": "DRAGONFLY_LIMIT_MGMT_KEY_NEW_ADDRESSES",
}
_ABUSE_NETWORKS = {
    "limit_exempt_addresses": "DRAGONFLY_LIMIT_EXEMPT_ADDRESSES",
    "control_trusted_proxies": "DRAGONFLY_CONTROL_TRUSTED_PROXIES",
}
_TRIAL_COUNTS = {
    "trial_per_address_per_day": "DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY",
    "trial_per_domain_per_day": "DRAGONFLY_TRIAL_PER_DOMAIN_PER_DAY",
    "trial_daily_total_micros": "DRAGONFLY_TRIAL_DAILY_TOTAL_MICROS",
}


def _abuse_env(env: dict[str, str], base: Settings) -> dict[str, Any]:
    """The account-surface limits and the trial-credit quotas; a variable set to an empty value is an
    empty list (networks) or no limit."""
    out: dict[str, Any] = {}
    for name, var in _ABUSE_RATES.items():
        raw = env.get(var)
        out[name] = getattr(base, name) if raw is None else parse_rate(var, raw or "off")
    for name, var in _ABUSE_NETWORKS.items():
        raw = env.get(var)
        out[name] = getattr(base, name) if raw is None else parse_networks(var, raw)
    for name, var in _TRIAL_COUNTS.items():
        out[name] = _at_least(0, var, int(env.get(var) or getattr(base, name)))
    return out


def _load_or_create_secret(path: Path) -> str:
    """Embedded mode keeps its server secret in the data dir (mode 0600) so restarts keep keys valid."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    return value
