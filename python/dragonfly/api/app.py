"""Build the Robyn app: routes through the one wrapper, resources made at startup and closed at shutdown.

Robyn gaps covered here (see ARCHITECTURE.md): its Config would parse `sys.argv`, so it is built from a clean
argv; Robyn's own OpenAPI `/docs` routes are disabled (ours, made from the route table, are
`/api/openapi.json` and `/api/docs`: api/openapi.py); request bodies are bounded in `http.endpoint`;
SIGTERM and SIGINT are handled here (Robyn's single-process server does not stop on them) with a bounded
shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from robyn import Robyn
from robyn.argument_parser import Config

from dragonfly import logfmt
from dragonfly.api import dashboard, openapi, verify_page
from dragonfly.api.context import AppState
from dragonfly.api.http import after_request, endpoint
from dragonfly.api.routes import ROUTES
from dragonfly.config import Settings
from dragonfly.mail import build_mailer
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.security.sessions import SessionTokens
from dragonfly.services import health
from dragonfly.services.abuse import AccountGuard
from dragonfly.storage.sql import open_database
from dragonfly.storage.state.factory import make_state_store
from dragonfly.storage.state.limits import make_rate_limiter
from dragonfly.workers import pricing, reprobe, settlement, usage_audit

log = logging.getLogger("dragonfly.api")
SHUTDOWN_GRACE_S = 5.0


def robyn_config() -> Config:
    """Robyn's Config reads argparse from sys.argv; give it only what we mean."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "dragonfly-api", "--disable-openapi", "--log-level", "WARN"]
    try:
        return Config()
    finally:
        sys.argv = saved


async def _startup(state: AppState) -> None:
    settings = state.settings
    state.hasher = KeyHasher(settings.secret_key)
    state.sessions = SessionTokens(settings.secret_key, settings.jwt_ttl_s)
    state.box = SecretBox(settings.secret_key)
    state.mailer = build_mailer(settings)
    state.db_ = await open_database(settings.database_url)
    if settings.redis_url:
        state.holds = make_state_store(settings)
    state.guard_ = AccountGuard(make_rate_limiter(settings), settings)
    period_s = settings.settlement_period_s
    # Earnings and reserve releases (workers/settlement.py); a bad reserve period stops the start.
    settlement.check_reserve_days(settings.reserve_release_days)
    state.spawn(
        settlement.run_forever(
            state.db_,
            lock_s=settings.earnings_lock_s,
            period_s=period_s,
            reserve_days=settings.reserve_release_days,
        ),
        name="earnings-settlement",
    )
    # Degraded and health-suspended listings come back through this re-probe (workers/reprobe.py).
    policy = health.policy_from(settings)  # inconsistent DRAGONFLY_HEALTH_* values stop the start
    state.spawn(reprobe.run_forever(state.db_, settings, state.box, policy), name="listing-reprobe")
    # Reference prices, multiplier and auto-follow listings follow the market (workers/pricing.py).
    pricing.check_period(settings.pricing_period_s)
    state.spawn(pricing.run_forever(state.db_, period_s=settings.pricing_period_s), name="listing-pricing")
    # Sellers whose reported usage drifts above the market's are flagged for review (workers/usage_audit.py).
    usage_audit.check_period(settings.usage_audit_period_s)
    state.spawn(
        usage_audit.run_forever(
            state.db_, period_s=settings.usage_audit_period_s, lock_s=settings.earnings_lock_s
        ),
        name="usage-audit",
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(_terminate(state)))


async def _shutdown(state: AppState) -> None:
    for task in list(state.tasks):
        task.cancel()
    if state.tasks:
        await asyncio.wait(list(state.tasks), timeout=SHUTDOWN_GRACE_S)
    db, state.db_ = state.db_, None
    if db is not None:
        await db.close()
    holds, state.holds = state.holds, None
    if holds is not None:
        await holds.close()
    guard, state.guard_ = state.guard_, None
    if guard is not None:
        await guard.close()


async def _terminate(state: AppState) -> None:
    try:
        await asyncio.wait_for(_shutdown(state), timeout=SHUTDOWN_GRACE_S)
    finally:
        logging.shutdown()
        os._exit(0)


def build_app(settings: Settings) -> Robyn:
    logfmt.apply(settings.log_format)  # DRAGONFLY_LOG_FORMAT, as the data plane (dragonfly/logfmt.py)
    state = AppState(settings=settings)
    app = Robyn(__file__, config=robyn_config())
    for route in ROUTES:
        name = f"{route.method} {route.path}"
        app.add_route(route.method, route.path, endpoint(state, route.access, route.handler, name))
    openapi.add_routes(app)
    verify_page.add_route(app)  # the page the verification mail links to
    dashboard.add_routes(app)  # `GET /` and its files under /dashboard/ (api/dashboard/)
    app.after_request()(after_request)

    async def startup() -> None:
        await _startup(state)

    async def shutdown() -> None:
        await _shutdown(state)

    app.startup_handler(startup)
    app.shutdown_handler(shutdown)
    return app
