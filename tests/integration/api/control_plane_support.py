"""Helpers for the control-plane tests: start `python -m dragonfly.api` as a real subprocess, drive it over
HTTP with `requests`, read the mail directory and the database directly."""

from __future__ import annotations

import asyncio
import email
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from support.ports import free_port
from support.processes import ProcessGroup

from dragonfly.services.accounts import create_account
from dragonfly.storage.ports import Row
from dragonfly.storage.sql import open_database

SECRET = "control-plane-test-secret"
PASSWORD = "correct horse battery"
_TOKEN = re.compile(r"^([A-Za-z0-9_-]{40,})$", re.M)


@dataclass
class ControlPlane:
    origin: str
    database_url: str
    mail_dir: Path

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.origin + path, headers=headers, timeout=30, **kw)

    def mails(self) -> list[email.message.Message]:
        files = sorted(self.mail_dir.glob("*.eml")) if self.mail_dir.exists() else []
        return [email.message_from_bytes(p.read_bytes()) for p in files]

    def verification_token(self, address: str) -> str:
        for msg in reversed(self.mails()):
            if msg["To"] == address:
                body = msg.get_payload(decode=True)
                assert isinstance(body, bytes)
                match = _TOKEN.search(body.decode())
                assert match, body
                return match.group(1)
        raise AssertionError(f"no mail to {address}")

    def signup_verified(self, address: str) -> str:
        """Sign up, verify through the mailed token, log in; returns the session token."""
        assert (
            self.call("POST", "/api/auth/signup", json={"email": address, "password": PASSWORD}).status_code
            == 201
        )
        token = self.verification_token(address)
        assert self.call("POST", "/api/auth/verify", json={"token": token}).status_code == 200
        return self.login(address)

    def login(self, address: str, password: str = PASSWORD) -> str:
        resp = self.call("POST", "/api/auth/login", json={"email": address, "password": password})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def query(self, sql: str, *args: Any) -> list[Row]:
        async def run() -> list[Row]:
            db = await open_database(self.database_url, migrate=False)
            try:
                return await db.fetch_all(sql, *args)
            finally:
                await db.close()

        return asyncio.run(run())

    def make_operator(self, address: str) -> str:
        """An operator account (as `dragonfly admin create-operator` makes it); returns a session token."""

        async def run() -> str:
            db = await open_database(self.database_url, migrate=False)
            try:
                return await create_account(
                    db, email=address, password=PASSWORD, verified=True, roles=["operator"]
                )
            finally:
                await db.close()

        asyncio.run(run())
        return self.login(address)


def start_control_plane(
    processes: ProcessGroup,
    database_url: str,
    data_dir: Path,
    *,
    allow_private: bool = True,
    extra_env: dict[str, str] | None = None,
) -> ControlPlane:
    port = free_port()
    mail_dir = data_dir / "mail"
    processes.start(
        [sys.executable, "-m", "dragonfly.api", "--host", "127.0.0.1", "--port", str(port)],
        ready_port=port,
        env={
            "DRAGONFLY_DATABASE_URL": database_url,
            "DRAGONFLY_DATA_DIR": str(data_dir),
            "DRAGONFLY_MAIL_BACKEND": "file",
            "DRAGONFLY_MAIL_DIR": str(mail_dir),
            "DRAGONFLY_SECRET_KEY": SECRET,
            "DRAGONFLY_ALLOW_PRIVATE_UPSTREAMS": "1" if allow_private else "0",
            "DRAGONFLY_UPSTREAM_CONNECT_TIMEOUT_S": "2",
            **(extra_env or {}),
        },
        timeout_s=60,
    )
    return ControlPlane(origin=f"http://127.0.0.1:{port}", database_url=database_url, mail_dir=mail_dir)


def wait_until(predicate: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def assert_error(resp: requests.Response, status: int, code: str) -> dict[str, Any]:
    """OpenAI-shaped error with the expected status and code, and a request id header."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("x-request-id"), resp.headers
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)
