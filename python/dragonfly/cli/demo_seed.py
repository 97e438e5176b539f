"""Seeds the local demo market for `dragonfly serve --demo`: a demo seller whose pool key points at the
demo seller process started for this run, an active (probed) `demo/echo-1` listing, and a demo buyer
with credit and a fresh key. Idempotent across restarts: last run's demo listings and pool keys are
retired (the demo seller's port changes each run), the accounts are reused."""

from __future__ import annotations

from secrets import token_urlsafe

from dragonfly.config import Settings
from dragonfly.domain.ledger import buyer_cash
from dragonfly.domain.money import cents_to_micros
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.services.keys import create_buyer_key
from dragonfly.services.listings import create_listing, delete_listing, list_listings
from dragonfly.services.pool_keys import create_pool_key, delete_pool_key, list_pool_keys
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger
from dragonfly.workers.probes import probe_listing

DEMO_SELLER_EMAIL = "demo-seller@dragonfly.local"
DEMO_BUYER_EMAIL = "demo-buyer@dragonfly.local"
DEMO_MODEL = "demo/echo-1"
DEMO_PROVIDER_KEY = "demo-provider-key"  # the demo seller's own key (dragonfly.demo.seller default)
DEMO_CREDIT_CENTS = 500


async def _account(db: Database, email: str) -> str:
    existing = await db.fetch_val("SELECT id FROM accounts WHERE email = $1", email)
    if existing:
        return str(existing)
    # Demo accounts log in with a random password nobody knows; they are driven by keys.
    return await create_account(db, email=email, password=token_urlsafe(24), verified=True, roles=[])


async def seed_demo(settings: Settings, seller_base_url: str) -> str:
    """Returns a new raw buyer key for this run."""
    db = await open_database(settings.database_url)
    box = SecretBox(settings.secret_key)
    try:
        seller_id = await _account(db, DEMO_SELLER_EMAIL)
        for listing in await list_listings(db, seller_id):
            await delete_listing(db, account_id=seller_id, listing_id=listing["id"])
        for pool in await list_pool_keys(db, seller_id):
            await delete_pool_key(db, account_id=seller_id, pool_key_id=pool["id"])
        pool = await create_pool_key(
            db,
            settings,
            box,
            account_id=seller_id,
            provider="custom",
            base_url=seller_base_url,
            api_key=DEMO_PROVIDER_KEY,
            name="demo seller",
        )
        listing = await create_listing(
            db,
            settings,
            account_id=seller_id,
            pool_key_id=pool["id"],
            model=DEMO_MODEL,
            upstream_model="echo-1",
            input_price_per_mtok="0.50",
            output_price_per_mtok="1.50",
            context_length=8192,
        )
        run = await probe_listing(db, settings, box, listing["id"])
        if not run.get("passed"):
            raise RuntimeError("the demo seller failed its admission probe")
        buyer_id = await _account(db, DEMO_BUYER_EMAIL)
        if await ledger.balance(db, buyer_cash(buyer_id)) < cents_to_micros(DEMO_CREDIT_CENTS) // 10:
            await credit_account(
                db, account_id=buyer_id, amount_micros=cents_to_micros(DEMO_CREDIT_CENTS), note="demo credit"
            )
        key = await create_buyer_key(db, KeyHasher(settings.secret_key), account_id=buyer_id, name="demo")
        return str(key["key"])
    finally:
        await db.close()
