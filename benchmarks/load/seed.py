"""Seed a market for a benchmark through the product's own services (as an operator would, via the
control plane): a seller with a pool key on the fake seller, a probed (active) chat listing and an
embeddings listing, and a buyer with plenty of credit and one key.

Run as a subprocess by the harness (so the Dragonfly code seeding is the code being measured):
    python -m benchmarks.load.seed SELLER_BASE_URL SELLER_API_KEY   (DRAGONFLY_* settings in the env)
prints the seeded market as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass

from dragonfly.config import Settings
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

CREDIT_CENTS = 10_000_000  # $100,000: never the limit in a benchmark


@dataclass
class SeededMarket:
    buyer_key: str
    chat_listing: str
    embed_listing: str | None
    embed_note: str


async def seed_market(env: dict[str, str], seller_base_url: str, seller_api_key: str) -> SeededMarket:
    settings = Settings.from_env(env=env)
    chat_model, embed_model = "demo/echo-1", "demo/embed-1"  # = targets.CHAT_MODEL, EMBED_MODEL
    box = SecretBox(settings.secret_key)
    db = await open_database(settings.database_url)
    try:
        seller_id = await create_account(
            db, email="seller@bench.test", password="seller-password-1", verified=True, roles=[]
        )
        pool = await create_pool_key(
            db,
            settings,
            box,
            account_id=seller_id,
            provider="custom",
            base_url=seller_base_url,
            api_key=seller_api_key,
        )
        chat = await create_listing(
            db,
            settings,
            account_id=seller_id,
            pool_key_id=pool["id"],
            model=chat_model,
            input_price_per_mtok="1.00",
            output_price_per_mtok="2.00",
            upstream_model="echo-1",
        )
        run = await probe_listing(db, settings, box, chat["id"])
        if not run.get("passed"):
            raise RuntimeError(f"the chat listing failed its admission probe: {run}")
        embed_id: str | None = None
        embed_note = ""
        try:
            embed = await create_listing(
                db,
                settings,
                account_id=seller_id,
                pool_key_id=pool["id"],
                model=embed_model,
                input_price_per_mtok="0.10",
                output_price_per_mtok="0",
                upstream_model="echo-1",
                kind="embeddings",
            )
            erun = await probe_listing(db, settings, box, embed["id"])
            if erun.get("passed"):
                embed_id = embed["id"]
            else:
                embed_note = f"embeddings listing failed its probe: {erun.get('checks')}"
        except Exception as exc:  # the product may not support embeddings listings yet
            embed_note = f"embeddings listing not created: {type(exc).__name__}: {exc}"
        buyer_id = await create_account(
            db, email="buyer@bench.test", password="buyer-password-1", verified=True, roles=[]
        )
        await credit_account(
            db, account_id=buyer_id, amount_micros=cents_to_micros(CREDIT_CENTS), note="bench"
        )
        key = await create_buyer_key(db, KeyHasher(settings.secret_key), account_id=buyer_id, name="bench")
        return SeededMarket(key["key"], chat["id"], embed_id, embed_note)
    finally:
        await db.close()


def main() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith("DRAGONFLY_")}
    market = asyncio.run(seed_market(env, sys.argv[1], sys.argv[2]))
    print(json.dumps(asdict(market)))


if __name__ == "__main__":
    main()
