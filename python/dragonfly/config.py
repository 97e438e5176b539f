"""Settings, read once from `DRAGONFLY_*` environment variables (CLI flags override them).

Nothing else in the package reads the environment: components receive a `Settings` instance.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

_TRUE = {"1", "true", "yes", "on"}


def _env_bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    return default if raw is None else raw.strip().lower() in _TRUE


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
            "trusted_proxies": tuple(
                p.strip() for p in e.get("DRAGONFLY_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            "max_inflight": _at_least(
                1, "DRAGONFLY_MAX_INFLIGHT", int(e.get("DRAGONFLY_MAX_INFLIGHT", base.max_inflight))
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
