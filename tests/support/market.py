"""Seeding a market through the product's own services, and running `dragonfly serve` as a real
subprocess in front of it (shared by e2e tests and fixtures)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from dragonfly.config import Settings
from dragonfly.demo.seller import DemoSeller
from dragonfly.domain.money import cents_to_micros
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.services.keys import create_buyer_key
from dragonfly.services.listings import create_listing
from dragonfly.services.pool_keys import create_pool_key
from dragonfly.storage.sql import open_database
from dragonfly.workers.probes import probe_listing
from support.ports import free_port
from support.processes import ProcessGroup

SECRET = "e2e-test-secret-not-for-production"
MODEL = "demo/echo-1"


@dataclass
class Market:
    base_url: str  # the gateway's public /v1
    origin: str  # http://127.0.0.1:PORT
    buyer_key: str
    buyer_id: str
    seller_id: str
    listing_id: str
    settings: Settings


def market_settings(database_url: str, data_dir: Path) -> Settings:
    return Settings.from_env(
        env={
            "DRAGONFLY_DATABASE_URL": database_url,
            "DRAGONFLY_DATA_DIR": str(data_dir),
            "DRAGONFLY_SECRET_KEY": SECRET,
            "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1",
            "DRAGONFLY_MAIL_BACKEND": "file",
        }
    )


async def seed_listing(
    settings: Settings,
    seller: DemoSeller,
    *,
    model: str = MODEL,
    seller_email: str = "seller@e2e.test",
    input_price: str = "1.00",
    output_price: str = "2.00",
    kind: str = "chat",
    rpm_cap: int | None = None,
    encoding: str | None = None,
    context_length: int | None = None,
    price_unit: str | None = None,
    cached_input_price: str | None = None,
) -> tuple[str, str]:
    """A seller account with a pool key on `seller` and an active (probed) listing. Returns ids."""
    db = await open_database(settings.database_url)
    try:
        seller_id = await create_account(
            db, email=seller_email, password="seller-password-1", verified=True, roles=[]
        )
        pool = await create_pool_key(
            db,
            settings,
            SecretBox(settings.secret_key),
            account_id=seller_id,
            provider="custom",
            base_url=seller.base_url,
            api_key=seller.api_key,
        )
        listing = await create_listing(
            db,
            settings,
            account_id=seller_id,
            pool_key_id=pool["id"],
            model=model,
            input_price_per_mtok=input_price,
            output_price_per_mtok=output_price,
            upstream_model="echo-1",
            kind=kind,
            rpm_cap=rpm_cap,
            encoding=encoding,
            context_length=context_length,
            price_unit=price_unit,
            cached_input_price_per_mtok=cached_input_price,
        )
        run = await probe_listing(db, settings, SecretBox(settings.secret_key), listing["id"])
        assert run.get("passed"), run
        return seller_id, listing["id"]
    finally:
        await db.close()


async def seed_buyer(
    settings: Settings, *, credit_cents: int, email: str = "buyer@e2e.test"
) -> tuple[str, str]:
    db = await open_database(settings.database_url)
    try:
        buyer_id = await create_account(db, email=email, password="buyer-password-1", verified=True, roles=[])
        if credit_cents:
            await credit_account(
                db, account_id=buyer_id, amount_micros=cents_to_micros(credit_cents), note="e2e"
            )
        key = await create_buyer_key(db, KeyHasher(settings.secret_key), account_id=buyer_id, name="e2e")
        return buyer_id, key["key"]
    finally:
        await db.close()


def login(origin: str, email: str = "buyer@e2e.test", password: str = "buyer-password-1") -> dict[str, str]:
    """A dashboard session through the public port: the Authorization header for /api/*."""
    r = requests.post(f"{origin}/api/auth/login", json={"email": email, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def start_serve(
    processes: ProcessGroup,
    settings: Settings,
    *,
    read_timeout_s: float = 5,
    extra_env: dict[str, str] | None = None,
) -> str:
    port = free_port()
    processes.start(
        [sys.executable, "-m", "dragonfly.cli", "serve", "--no-demo", "--port", str(port)],
        ready_port=port,
        env={
            "DRAGONFLY_DATABASE_URL": settings.database_url,
            "DRAGONFLY_DATA_DIR": settings.data_dir,
            "DRAGONFLY_SECRET_KEY": SECRET,
            "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1",
            "DRAGONFLY_MAIL_BACKEND": "file",
            "DRAGONFLY_UPSTREAM_CONNECT_TIMEOUT_S": "2",
            "DRAGONFLY_UPSTREAM_READ_TIMEOUT_S": str(read_timeout_s),
            **(extra_env or {}),
        },
        timeout_s=60,
    )
    return f"http://127.0.0.1:{port}"
