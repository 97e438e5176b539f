"""The data plane's key read-through against a real database: a key created behind the snapshot's back
is found on its first use, unknown keys cost the database a bounded number of look-ups whatever their
rate, and a PostgreSQL change-sequence bump wakes a listening instance at once."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from dragonfly.errors import InvalidApiKey
from dragonfly.gateway import auth
from dragonfly.gateway.auth import KeyResolver
from dragonfly.gateway.changes import ChangeListener
from dragonfly.gateway.snapshot import Snapshot, load_snapshot
from dragonfly.ids import now_ms
from dragonfly.security.api_keys import KeyHasher
from dragonfly.security.secretbox import SecretBox
from dragonfly.services.accounts import create_account
from dragonfly.services.keys import create_buyer_key
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes

SECRET = "read-through-test-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await open_database(database_url)
    yield database
    await database.close()


class Plane:
    """What KeyResolver needs from the runtime: a snapshot and a way to reload it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.snapshot: Snapshot | None = None
        self.reloads = 0

    async def reload(self) -> None:
        self.reloads += 1
        seq = await changes.current(self.db)
        self.snapshot = await load_snapshot(self.db, SecretBox(SECRET), seq, now_ms())

    def resolver(self, clock: Clock) -> KeyResolver:
        def snap() -> Snapshot:
            assert self.snapshot is not None
            return self.snapshot

        return KeyResolver(KeyHasher(SECRET), snap, lambda: self.db, self.reload, clock)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_key_created_after_the_snapshot_is_found_on_first_use(db: Database) -> None:
    plane = Plane(db)
    await plane.reload()
    account = await create_account(
        db, email="rt@example.test", password="password-123", verified=True, roles=[]
    )
    key = await create_buyer_key(db, KeyHasher(SECRET), account_id=account)
    resolver = plane.resolver(Clock())
    found = await resolver.authenticate(bearer(key["key"]))
    assert found.id == key["id"] and resolver.lookups == 1 and plane.reloads == 2
    await resolver.authenticate(bearer(key["key"]))  # now from the snapshot
    assert resolver.lookups == 1


async def test_unknown_keys_cost_a_bounded_number_of_lookups(db: Database) -> None:
    plane = Plane(db)
    await plane.reload()
    clock = Clock()
    resolver = plane.resolver(clock)
    for _ in range(500):  # a flood of distinct random keys within one instant
        with pytest.raises(InvalidApiKey):
            await resolver.authenticate(bearer("sk-df-" + secrets.token_urlsafe(32)))
    assert resolver.lookups == auth.LOOKUP_BURST
    clock.now += 1.0  # one second later: the bucket refilled by LOOKUPS_PER_S
    for _ in range(500):
        with pytest.raises(InvalidApiKey):
            await resolver.authenticate(bearer("sk-df-" + secrets.token_urlsafe(32)))
    assert resolver.lookups == auth.LOOKUP_BURST + auth.LOOKUPS_PER_S
    # The same unknown key again and again: looked up once, then remembered as absent.
    clock.now += 100.0
    before = resolver.lookups
    same = "sk-df-" + secrets.token_urlsafe(32)
    for _ in range(50):
        with pytest.raises(InvalidApiKey):
            await resolver.authenticate(bearer(same))
    assert resolver.lookups == before + 1
    assert plane.reloads == 1  # no unknown key ever reloaded the snapshot


@pytest.mark.postgres
async def test_a_change_sequence_bump_wakes_a_listener_at_once(pg_database_url: str) -> None:
    db = await open_database(pg_database_url)
    listener = ChangeListener(pg_database_url)
    try:
        await listener.start()
        assert listener.listening
        await listener.wait(0.01)  # the start-up wake-up
        for _ in range(2):
            async with db.transaction() as tx:
                await changes.bump(tx)
            started = time.monotonic()
            await listener.wait(30.0)
            assert time.monotonic() - started < 2.0
        assert listener.notifications >= 2
        # The listening connection is killed: it comes back by itself and hears the next bump.
        await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
        for _ in range(100):  # the connection learns it was closed, then the listener reconnects
            await asyncio.sleep(0.1)
            if listener.listening and listener.reconnects:
                break
        assert listener.listening and listener.reconnects == 1
        await listener.wait(0.01)
        heard = listener.notifications
        async with db.transaction() as tx:
            await changes.bump(tx)
        await listener.wait(5.0)
        assert listener.notifications == heard + 1
    finally:
        await listener.stop()
        await db.close()
