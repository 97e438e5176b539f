"""The operator CLI against both backends: migrate, create-operator, credit (a balanced journal)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from dragonfly.domain.ledger import EXTERNAL_CREDIT, buyer_cash
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.repos import ledger


def dragonfly(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dragonfly.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _state(url: str, email: str) -> tuple[str, list[str], int, int]:
    db = await open_database(url)
    try:
        row = await db.fetch_one("SELECT id, roles FROM accounts WHERE email = $1", email)
        assert row is not None
        return (
            row["id"],
            row["roles"],
            await ledger.balance(db, buyer_cash(row["id"])),
            await ledger.balance(db, EXTERNAL_CREDIT),
        )
    finally:
        await db.close()


def test_operator_cli_creates_operator_and_credits(database_url: str, tmp_path: Path) -> None:
    env = {"DRAGONFLY_DATABASE_URL": database_url, "DRAGONFLY_DATA_DIR": str(tmp_path)}
    migrated = dragonfly(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert "migration" in migrated.stdout
    again = dragonfly(["migrate"], env)
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout

    made = dragonfly(
        ["admin", "create-operator", "--email", "Ops@Example.com"],
        {**env, "DRAGONFLY_OPERATOR_PASSWORD": "operator-password-1"},
    )
    assert made.returncode == 0, made.stderr
    assert "operator-password-1" not in made.stdout + made.stderr

    credited = dragonfly(["admin", "credit", "--email", "ops@example.com", "--amount-cents", "250"], env)
    assert credited.returncode == 0, credited.stderr
    assert "2.500000 USD" in credited.stdout
    account_id, roles, balance, external = asyncio.run(_state(database_url, "ops@example.com"))
    assert "operator" in roles
    assert balance == 2_500_000 and external == -2_500_000

    unknown = dragonfly(["admin", "credit", "--email", "nobody@example.com", "--amount-cents", "1"], env)
    assert unknown.returncode != 0 and "no account" in unknown.stderr
    zero = dragonfly(["admin", "credit", "--account-id", account_id, "--amount-cents", "0"], env)
    assert zero.returncode != 0


def test_refusals_are_one_clear_line_not_a_traceback(database_url: str, tmp_path: Path) -> None:
    env = {
        "DRAGONFLY_DATABASE_URL": database_url,
        "DRAGONFLY_DATA_DIR": str(tmp_path),
        "DRAGONFLY_OPERATOR_PASSWORD": "operator-password-1",
    }
    first = dragonfly(["admin", "create-operator", "--email", "ops@cli.test"], env)
    assert first.returncode == 0, first.stderr
    refusals = [
        ["admin", "create-operator", "--email", "ops@cli.test"],  # taken
        ["admin", "create-operator", "--email", "not-an-email"],
        ["admin", "credit", "--account-id", "00000000-0000-4000-8000-000000000000", "--amount-cents", "5"],
        ["admin", "credit", "--email", "ops@cli.test", "--amount-cents", str(10**12)],
    ]
    for args in refusals:
        out = dragonfly(args, env)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, (args, out.stderr)
        assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    short = dragonfly(
        ["admin", "create-operator", "--email", "b@cli.test"], {**env, "DRAGONFLY_OPERATOR_PASSWORD": "x"}
    )
    assert short.returncode == 1 and "Traceback" not in short.stderr, short.stderr
