"""Abuse limits on the account surface and the trial credit's rules (docs/operator.md, "Abuse limits"), over
HTTP against real control planes: on PostgreSQL two instances share Redis (every limit must hold across
them), on SQLite one instance counts in process (the embedded default).

Clients are told apart by `X-Forwarded-For`, which the control plane believes from loopback (the data
plane's address under `serve`); loopback itself is exempt from the per-address limits by default."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from control_plane_support import PASSWORD, ControlPlane, assert_error, start_control_plane
from support.processes import ProcessGroup

from dragonfly.security.passwords import hash_password, verify_password
from dragonfly.services.accounts import create_account
from dragonfly.storage.sql import open_database


class Planes:
    """One control plane (SQLite) or two sharing PostgreSQL and Redis; `at(i)` picks them in turn."""

    def __init__(
        self, request: pytest.FixtureRequest, processes: ProcessGroup, database_url: str, data_dir: Path
    ) -> None:
        self._request, self._processes = request, processes
        self.database_url, self.data_dir = database_url, data_dir
        self.shared = not database_url.startswith("sqlite:")
        self.env: dict[str, str] = {}
        self.instances: list[ControlPlane] = []
        self.pids: list[int] = []

    def start(self, **env: str) -> Planes:
        self.env = dict(env)
        if self.shared:
            self.env["DRAGONFLY_REDIS_URL"] = self._request.getfixturevalue("fresh_redis_url")
        for _ in range(2 if self.shared else 1):
            self._start_one()
        return self

    def _start_one(self) -> None:
        self.instances.append(
            start_control_plane(self._processes, self.database_url, self.data_dir, extra_env=self.env)
        )
        self.pids.append(self._processes.started[-1].pid)

    def restart_first(self) -> None:
        """Stop the first instance and start a new one on the same database (and Redis)."""
        old = next(p for p in self._processes.started if p.pid == self.pids[0])
        old.stop()
        self.instances.pop(0)
        self.pids.pop(0)
        self._start_one()
        self.instances.insert(0, self.instances.pop())
        self.pids.insert(0, self.pids.pop())

    def at(self, i: int) -> ControlPlane:
        return self.instances[i % len(self.instances)]

    def cpu_s(self) -> float:
        """User + system CPU of every instance so far (all threads: argon2 runs on worker threads)."""
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def planes(
    request: pytest.FixtureRequest, processes: ProcessGroup, database_url: str, tmp_path: Path
) -> Planes:
    return Planes(request, processes, database_url, tmp_path / "data")


def post(
    plane: ControlPlane, path: str, body: dict[str, Any], client: str, token: str | None = None
) -> requests.Response:
    return plane.call("POST", path, token, json=body, headers={"x-forwarded-for": client})


def login(plane: ControlPlane, email: str, password: str, client: str) -> requests.Response:
    return post(plane, "/api/auth/login", {"email": email, "password": password}, client)


def make_accounts(database_url: str, *emails: str) -> None:
    async def run() -> None:
        db = await open_database(database_url)
        try:
            for address in emails:
                await create_account(db, email=address, password=PASSWORD, verified=True, roles=[])
        finally:
            await db.close()

    asyncio.run(run())


def refused(resp: requests.Response, most_s: int) -> int:
    """429 `rate_limited` in the OpenAI envelope with a request id and a `retry-after` in (0, most_s]."""
    assert_error(resp, 429, "rate_limited")
    retry = int(resp.headers["retry-after"])
    assert 0 < retry <= most_s, retry
    return retry


def argon2_cost() -> tuple[float, float]:
    """(CPU, wall) seconds of one password verification here: what a refused login must not spend."""
    stored = hash_password("calibration password")
    cpu, wall = time.process_time(), time.perf_counter()
    verify_password(stored, "a wrong password")
    return time.process_time() - cpu, time.perf_counter() - wall


def test_failed_logins_lock_the_email_on_every_instance_before_argon2_runs(planes: Planes) -> None:
    planes.start()  # the defaults: 5 failures per email per 15 minutes, 20 attempts per address a minute
    make_accounts(planes.database_url, "ada@example.com", "bea@example.com", "cy@example.com")
    addresses = [f"203.0.113.{i}" for i in range(1, 20)]  # a guesser that rotates addresses
    for i in range(5):
        resp = login(planes.at(i), "ada@example.com", f"guess number {i}", addresses[i])
        assert_error(resp, 401, "invalid_credentials")

    # The sixth try, even with the right password, from a new address, on either instance: refused.
    for i in range(2):
        refused(login(planes.at(i), "ada@example.com", PASSWORD, addresses[5 + i]), 900)

    # Refused before argon2: ten more refusals cost far less CPU than one verification each would.
    cpu_cost, wall_cost = argon2_cost()
    before, started = planes.cpu_s(), time.perf_counter()
    for i in range(10):
        refused(login(planes.at(i), "ada@example.com", PASSWORD, addresses[7 + i]), 900)
    spent, wall = planes.cpu_s() - before, time.perf_counter() - started
    assert spent < 10 * cpu_cost / 4, (spent, cpu_cost)
    assert wall < 10 * wall_cost / 2, (wall, wall_cost)

    # The lock is the email's: another account logs in from the same addresses.
    assert login(planes.at(0), "bea@example.com", PASSWORD, addresses[0]).status_code == 200

    # Concurrent guesses cannot overrun the limit: each takes its slot before its password is checked.
    with ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda i: login(planes.at(i), "cy@example.com", f"guess {i}", addresses[i % 12]).status_code,
                range(12),
            )
        )
    assert sorted(answers) == [401] * 5 + [429] * 7, answers


def test_address_limits_hold_across_instances(planes: Planes) -> None:
    planes.start(
        DRAGONFLY_LIMIT_SIGNUP_PER_ADDRESS="3/1h",
        DRAGONFLY_LIMIT_LOGIN_PER_ADDRESS="4/1m",
        DRAGONFLY_LIMIT_VERIFY_PER_ADDRESS="2/1m",
        DRAGONFLY_LIMIT_AUTH_FAILURES_PER_ADDRESS="3/1m",
    )
    flood, other, exempt = "198.51.100.1", "198.51.100.2", "127.0.0.1"

    # Signup flood from one address: three accounts, then 429 on either instance, and no fourth account.
    for i in range(3):
        body = {"email": f"flood{i}@example.com", "password": PASSWORD}
        assert post(planes.at(i), "/api/auth/signup", body, flood).status_code == 201
    for i in range(2):
        body = {"email": f"late{i}@example.com", "password": PASSWORD}
        refused(post(planes.at(i), "/api/auth/signup", body, flood), 3600)
    assert planes.at(0).query("SELECT email FROM accounts WHERE email LIKE 'late%'") == []
    for client in (other, exempt):
        body = {"email": f"other-{client}@example.com", "password": PASSWORD}
        assert post(planes.at(1), "/api/auth/signup", body, client).status_code == 201
    # The IPv6 clients of one /64 are one address.
    for i, client in enumerate(["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"]):
        body = {"email": f"six{i}@example.com", "password": PASSWORD}
        assert post(planes.at(i), "/api/auth/signup", body, client).status_code == 201
    refused(
        post(
            planes.at(0),
            "/api/auth/signup",
            {"email": "six9@example.com", "password": PASSWORD},
            "2001:db8:7:7::9",
        ),
        3600,
    )

    # Login attempts per address: four, whatever the emails, then even a right password waits.
    make_accounts(planes.database_url, "known@example.com")
    guesser = "198.51.100.3"
    for i in range(4):
        assert_error(
            login(planes.at(i), f"nobody{i}@example.com", PASSWORD, guesser), 401, "invalid_credentials"
        )
    refused(login(planes.at(0), "known@example.com", PASSWORD, guesser), 60)
    session = login(planes.at(1), "known@example.com", PASSWORD, other).json()["access_token"]

    # Verification attempts per address.
    for i in range(2):
        assert_error(
            post(planes.at(i), "/api/auth/verify", {"token": "x" * 43}, guesser), 400, "invalid_request"
        )
    refused(post(planes.at(0), "/api/auth/verify", {"token": "x" * 43}, guesser), 60)

    # Bad credentials on the authenticated routes: past three, the address is refused before any look-up,
    # a valid session included; requests without credentials are not counted; other addresses go on.
    scanner = "198.51.100.4"
    me = "/api/auth/me"
    for i in range(3):
        assert (
            planes.at(i)
            .call("GET", me, "sk-df-" + "x" * 40, headers={"x-forwarded-for": scanner})
            .status_code
            == 401
        )
    refused(planes.at(1).call("GET", me, session, headers={"x-forwarded-for": scanner}), 60)
    refused(planes.at(0).call("GET", me, "not-a-jwt", headers={"x-forwarded-for": scanner}), 60)
    assert planes.at(0).call("GET", me, session, headers={"x-forwarded-for": other}).status_code == 200
    for _ in range(5):
        assert planes.at(0).call("GET", me, headers={"x-forwarded-for": "198.51.100.5"}).status_code == 401
    assert (
        planes.at(1).call("GET", me, session, headers={"x-forwarded-for": "198.51.100.5"}).status_code == 200
    )


def _signup(plane: ControlPlane, email: str, client: str) -> None:
    resp = post(plane, "/api/auth/signup", {"email": email, "password": PASSWORD}, client)
    assert resp.status_code == 201, resp.text


def _verify(plane: ControlPlane, email: str, client: str) -> bool:
    resp = post(plane, "/api/auth/verify", {"token": plane.verification_token(email)}, client)
    assert resp.status_code == 200, resp.text
    assert resp.json()["email_verified"] is True
    return bool(resp.json()["trial_credit_granted"])


def test_trial_credit_follows_the_identity_address_domain_and_daily_rules(planes: Planes) -> None:
    planes.start(
        DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY="2",
        DRAGONFLY_TRIAL_PER_DOMAIN_PER_DAY="2",
        DRAGONFLY_TRIAL_DAILY_TOTAL_MICROS="400000",  # four trials of $0.10
    )
    a, b, c, d, elsewhere = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.99"
    # (signup address, email, granted?), verified in this order from another address (the signup's
    # counts). Each refusal breaks exactly one rule, so each rule is needed for the answers to hold.
    plan = [
        (a, "ann@gmail.com", True),
        (a, "bob@one.test", True),
        (a, "cat@two.test", False),  # address a had its two today
        (b, "A.nn+again@googlemail.com", False),  # ann@gmail.com's mailbox had its trial
        (b, "dan@one.test", True),
        (c, "eve@one.test", False),  # one.test had its two today
        (c, "fay@three.test", True),  # the fourth: the day's total is used up
        (d, "gus@four.test", False),  # nothing left today, whatever the rules above
    ]
    for i, (client, email, _) in enumerate(plan):
        _signup(planes.at(i), email, client)
    granted = []
    for i, (_, email, _) in enumerate(plan):
        if i == len(plan) - 1:
            planes.restart_first()  # the counts live in the database
        granted.append(_verify(planes.at(i), email.lower(), elsewhere))
    assert granted == [want for _, _, want in plan]

    # `me` and the balance say the same; the ledger holds exactly four trials and balances.
    for i, (_, email, want) in enumerate(plan):
        session = login(planes.at(i), email.lower(), PASSWORD, elsewhere).json()["access_token"]
        me = planes.at(i).call("GET", "/api/auth/me", session).json()
        assert me["trial_credit_granted"] is want and me["email_verified"] is True
        balance = planes.at(i).call("GET", "/api/billing/balance", session).json()["balance_usd"]
        assert balance == ("0.100000" if want else "0.000000"), (email, balance)
    api = planes.at(0)
    assert api.query("SELECT COUNT(*) AS n FROM journals WHERE kind = 'trial_credit'")[0]["n"] == 4
    assert api.query("SELECT SUM(amount) AS s FROM entries")[0]["s"] == 0
    # No address is stored, only keyed digests of them.
    digests = [row["address_digest"] for row in api.query("SELECT address_digest FROM signup_origins")]
    assert len(digests) == 8 and not any(ip in str(digests) for ip in (a, b, c, d))


def test_trial_daily_total_holds_under_concurrent_verifications(planes: Planes) -> None:
    planes.start(DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY="0", DRAGONFLY_TRIAL_DAILY_TOTAL_MICROS="300000")
    emails = [f"rush{i}@example.com" for i in range(8)]
    for i, email in enumerate(emails):
        _signup(planes.at(i), email, f"192.0.2.{10 + i}")
    tokens = [planes.at(0).verification_token(email) for email in emails]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: post(planes.at(i), "/api/auth/verify", {"token": tokens[i]}, f"192.0.2.{40 + i}"),
                range(8),
            )
        )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sum(r.json()["trial_credit_granted"] for r in answers) == 3
    api = planes.at(0)
    assert api.query("SELECT COUNT(*) AS n FROM journals WHERE kind = 'trial_credit'")[0]["n"] == 3
    assert api.query("SELECT used FROM trial_quotas WHERE scope = 'total'")[0]["used"] == 300_000


def test_a_management_key_is_used_from_a_limited_number_of_new_addresses(planes: Planes) -> None:
    planes.start(DRAGONFLY_LIMIT_MGMT_KEY_NEW_ADDRESSES="3/1h")
    make_accounts(planes.database_url, "ops-script@example.com")
    session = planes.at(0).login("ops-script@example.com")
    made = [
        planes.at(i).call(
            "POST", "/api/management-keys", session, json={"name": f"ci{i}", "mgmt_scope": "full"}
        )
        for i in range(2)
    ]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    key, other_key = (r.json()["key"] for r in made)

    def keys_from(i: int, token: str, client: str) -> requests.Response:
        return planes.at(i).call("GET", "/api/keys", token, headers={"x-forwarded-for": client})

    # Three addresses are new once each, on either instance; a known one is free however often it calls.
    for i, client in enumerate(["203.0.113.1", "203.0.113.2", "2001:db8:1:2::5"]):
        assert keys_from(i, key, client).status_code == 200
    for i in range(4):
        assert keys_from(i, key, "203.0.113.1").status_code == 200
    assert keys_from(0, key, "2001:db8:1:2::99").status_code == 200  # the same /64 is the same address
    # A fourth new address: refused on every instance, before the route runs; the known ones go on.
    for i in range(2):
        refused(keys_from(i, key, "198.51.100.9"), 3600)
    assert keys_from(1, key, "203.0.113.2").status_code == 200
    # The limit is the key's: another key, a session and the exempt loopback are not affected.
    assert keys_from(0, other_key, "198.51.100.9").status_code == 200
    assert keys_from(1, session, "198.51.100.9").status_code == 200
    assert keys_from(0, key, "127.0.0.1").status_code == 200
