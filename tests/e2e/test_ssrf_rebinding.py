"""DNS rebinding (invariant 7) through `dragonfly serve` with private upstreams off: a seller registers a
host name that resolves to a public address when it is validated and to 127.0.0.1 from then on, and a
real HTTP server listens on that loopback port. Every path that connects to a seller must refuse it at
connect time, and the loopback server must never see a connection:

- the admission probe (spawned when the listing is created) and the seller's own `POST .../probe`;
- inference through the data plane (the listing made routable as a passed probe would have made it:
  no test can run a seller at a public address);
- the control plane's re-probe worker (the contract degraded with its re-probe due) and the seller's
  `POST /v1/market/contracts/:id/reverify`.

DNS is the tests' fake (support/fake_dns.py), installed in every process `serve` starts through a
`sitecustomize` on PYTHONPATH: one list of answers per name, counted across processes like one DNS server.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.fake_dns import FakeDns
from support.market import login, market_settings, seed_buyer, start_serve
from support.processes import ProcessGroup

from dragonfly.config import Settings
from dragonfly.ids import now_ms
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import changes
from dragonfly.storage.sql.repos import contracts as contracts_repo
from dragonfly.storage.sql.repos import health as health_repo
from dragonfly.storage.sql.repos import listings as listings_repo

PUBLIC = "93.184.215.14"
NAME = "seller.rebind.test"
SELLER_EMAIL, SELLER_PASSWORD = "rebind-seller@e2e.test", "seller-password-1"


class Listener:
    """A loopback TCP server that counts the connections it accepts (and answers none of them)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._run, name="rebind-victim", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def victim() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def _wait(what: str, check: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _db_write(settings: Settings, listing_id: str, contract: str, *, reprobe_due: bool) -> None:
    """Set the contract's status as the probe or live health would (and the re-probe due, if asked)."""
    db = await open_database(settings.database_url)
    try:
        now = now_ms()
        async with db.transaction() as tx:
            current = await contracts_repo.current_for_listing(tx, listing_id)
            assert current is not None
            await contracts_repo.set_status(
                tx, contract_id=current["id"], status=contract, reason=None, now=now
            )
            await listings_repo.update(
                tx, listing_id, {"status": "active", "contract_status": contract}, now=now
            )
            if reprobe_due:
                await health_repo.save(
                    tx, listing_id, ejections=1, last_ejected_at=now, reprobe_at=now - 1, now=now
                )
            await changes.bump(tx)
    finally:
        await db.close()


async def _seller(settings: Settings) -> None:
    db = await open_database(settings.database_url)
    try:
        await create_account(db, email=SELLER_EMAIL, password=SELLER_PASSWORD, verified=True, roles=[])
    finally:
        await db.close()


def test_a_seller_host_rebinding_to_loopback_is_refused_on_every_path_that_connects(
    tmp_path: Path, processes: ProcessGroup, victim: Listener
) -> None:
    dns = FakeDns(tmp_path / "dns.json")
    dns.answer(NAME, PUBLIC, "127.0.0.1")  # public when validated, loopback from then on
    data = tmp_path / "data"
    data.mkdir()
    settings = market_settings(f"sqlite:///{data / 'dragonfly.db'}", data)
    asyncio.run(_seller(settings))
    _, buyer_key = asyncio.run(seed_buyer(settings, credit_cents=100))
    origin = start_serve(
        processes,
        settings,
        extra_env={
            "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "0",
            "DRAGONFLY_HEALTH_BASE_EJECTION_S": "1",
            **dns.env(),
        },
    )
    seller = login(origin, SELLER_EMAIL, SELLER_PASSWORD)

    # Registration: the name answers a public address, so the base URL is accepted.
    base_url = f"https://{NAME}:{victim.port}/v1"
    pool = requests.post(
        f"{origin}/v1/pool/keys",
        json={"provider": "custom", "base_url": base_url, "api_key": "sk-rebinding-seller-0123456789"},
        headers=seller,
        timeout=10,
    )
    assert pool.status_code == 201, pool.text
    assert [a for a, _ in dns.lookups(NAME)] == [PUBLIC]

    # The admission probe at creation, and the seller's own probe: the name is loopback now. Refused.
    listing = requests.post(
        f"{origin}/v1/market/listings",
        json={
            "pool_key_id": pool.json()["id"],
            "model": "rebind/echo-1",
            "upstream_model": "echo-1",
            "input_price_per_mtok": "1.00",
            "output_price_per_mtok": "2.00",
        },
        headers=seller,
        timeout=10,
    )
    assert listing.status_code == 201, listing.text
    listing_id = listing.json()["id"]
    runs_url = f"{origin}/v1/market/listings/{listing_id}/probe-runs"
    _wait("the admission probe", lambda: requests.get(runs_url, headers=seller, timeout=10).json()["data"])
    probe = requests.post(f"{origin}/v1/market/listings/{listing_id}/probe", headers=seller, timeout=30)
    assert probe.status_code == 200, probe.text
    for run in requests.get(runs_url, headers=seller, timeout=10).json()["data"]:
        assert not run["passed"]
        assert run["checks"][0]["kind"] == "reachability" and "loopback" in run["checks"][0]["detail"], run

    # Inference: routable now, as if its probes had passed back when the name was public. The data plane
    # resolves the name when it connects: loopback, refused; the buyer gets a 5xx of the seller's.
    asyncio.run(_db_write(settings, listing_id, "active", reprobe_due=False))
    chat_body = {"model": "rebind/echo-1", "messages": [{"role": "user", "content": "hi"}]}
    buyer = {"Authorization": f"Bearer {buyer_key}"}

    def routed() -> list[requests.Response]:
        r = requests.post(f"{origin}/v1/chat/completions", json=chat_body, headers=buyer, timeout=30)
        return [r] if r.status_code != 404 else []  # 404 model_not_found until the snapshot has it

    (chat,) = _wait("the data plane to route the listing", routed)
    assert chat.status_code == 502 and chat.json()["error"]["code"] == "upstream_error", chat.text

    # The re-probe worker (the contract degraded, its re-probe due) and the seller's reverify.
    asyncio.run(_db_write(settings, listing_id, "degraded", reprobe_due=True))
    contract_id = requests.get(
        f"{origin}/v1/market/listings/{listing_id}/contracts", headers=seller, timeout=10
    ).json()["data"][0]["id"]
    checks_url = f"{origin}/v1/market/contracts/{contract_id}/checks"

    def reprobed() -> list[dict[str, Any]]:
        checks = requests.get(checks_url, headers=seller, timeout=10).json()["data"]
        return [c for c in checks if c["kind"] == "health:reprobe"]

    reprobe = _wait("the re-probe worker", reprobed)
    assert not reprobe[0]["passed"] and "loopback" in reprobe[0]["detail"], reprobe
    asyncio.run(_db_write(settings, listing_id, "degraded", reprobe_due=False))
    reverify = requests.post(
        f"{origin}/v1/market/contracts/{contract_id}/reverify", headers=seller, timeout=30
    )
    assert reverify.status_code == 200, reverify.text
    assert reverify.json()["reverified"] is False and "loopback" in reverify.json()["reason"]

    assert victim.accepted == 0, "a seller connection reached the loopback server"
    # Each of those paths looked the name up again (the control plane's and the data plane's processes),
    # and after the first every answer was loopback.
    lookups = dns.lookups(NAME)
    assert [a for a, _ in lookups[1:]] == ["127.0.0.1"] * (len(lookups) - 1)
    assert len({pid for _, pid in lookups}) >= 2
    assert len(lookups) >= 6
