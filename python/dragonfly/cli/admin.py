"""`dragonfly admin …`: operator tasks run against the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from dragonfly.config import Settings
from dragonfly.domain.money import cents_to_micros, usd
from dragonfly.errors import DragonflyError, ServiceUnavailable
from dragonfly.ids import iso
from dragonfly.services.accounts import create_account
from dragonfly.services.credits import credit_account
from dragonfly.services.ledger_check import Counts, Violation, check_ledger, counts
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.settlement_log import (
    LogInUse,
    SettlementLog,
    log_path_for_url,
    read_refused,
    refused_path_for,
)

T = TypeVar("T")


def _run(fn: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run `fn` against the configured database. A refusal (an e-mail already taken, a short password,
    an unknown account) is printed as `Error: <message>` with exit status 1, never as a traceback."""

    async def inner() -> T:
        settings = Settings.from_env()
        db = await open_database(settings.database_url)
        try:
            return await fn(db, settings)
        finally:
            await db.close()

    try:
        return asyncio.run(inner())
    except DragonflyError as err:
        raise click.ClickException(err.message) from None


@click.group()
def admin() -> None:
    """Operator tasks."""


@admin.command("create-operator")
@click.option("--email", required=True)
@click.password_option("--password", envvar="DRAGONFLY_OPERATOR_PASSWORD", help="Prompted when omitted.")
def create_operator(email: str, password: str) -> None:
    """Create a verified account with the operator role (it can use /api/admin/*)."""

    async def go(db: Database, settings: Settings) -> str:
        return await create_account(db, email=email, password=password, verified=True, roles=["operator"])

    account_id = _run(go)
    click.echo(f"operator account {account_id} created for {email}")


@admin.command("credit")
@click.option("--account-id", default=None, help="Account to credit.")
@click.option("--email", default=None, help="…or the account's email.")
@click.option("--amount-cents", type=click.IntRange(min=1), required=True)
@click.option("--note", default="operator credit")
def credit(account_id: str | None, email: str | None, amount_cents: int, note: str) -> None:
    """Credit an account's balance (a journal from external:credit)."""
    if not account_id and not email:
        raise click.UsageError("give --account-id or --email")

    async def go(db: Database, settings: Settings) -> str:
        target = account_id
        if target is None:
            target = await db.fetch_val("SELECT id FROM accounts WHERE email = $1", (email or "").lower())
            if target is None:
                raise click.ClickException("no account with that email")
        await credit_account(db, account_id=target, amount_micros=cents_to_micros(amount_cents), note=note)
        return target

    target = _run(go)
    click.echo(f"credited {usd(cents_to_micros(amount_cents))} USD to account {target}")


@admin.command("check-ledger")
@click.option(
    "--state/--no-state", default=True, help="Also compare the Redis state store (when configured)."
)
def check_ledger_cmd(state: bool) -> None:
    """Verify the ledger invariants (ARCHITECTURE.md, Invariants 1–3); exit 1 on any violation."""

    async def go(db: Database, settings: Settings) -> tuple[list[Violation], Counts]:
        store = None
        if state and settings.redis_url:
            from dragonfly.storage.state.factory import make_state_store

            store = make_state_store(settings)
        try:
            return await check_ledger(db, store), await counts(db)
        except ServiceUnavailable as exc:
            raise click.ClickException(f"state store unavailable ({exc}); rerun with --no-state") from None
        finally:
            if store is not None:
                await store.close()

    violations, seen = _run(go)
    for v in violations:
        click.echo(str(v))
    if violations:
        click.echo(f"ledger check failed: {len(violations)} violation(s)", err=True)
        raise SystemExit(1)
    click.echo(f"ledger ok: {seen.journals} journals, {seen.entries} entries, {seen.trades} trades checked")


@admin.command("refused-trades")
@click.option(
    "--requeue",
    is_flag=True,
    help="Put them back into the settlement log (stop the gateway first); its next start commits them.",
)
def refused_trades(requeue: bool) -> None:
    """List the trades the database refused (set aside beside the settlement log, embedded default)."""
    log_path = log_path_for_url(Settings.from_env().database_url)
    if log_path is None:
        raise click.ClickException("there is a settlement log only on the embedded default (a SQLite file)")
    refused = read_refused(log_path)
    unreadable = 0
    for line_no, entry in refused:
        if entry is None:
            unreadable += 1
            click.echo(f"line {line_no}: not readable by this version (left for a person)")
            continue
        trade, _ = entry
        click.echo(
            f"{trade.id}  buyer {trade.buyer_account_id}  {trade.status}  "
            f"charge {usd(trade.cost_micros)} USD  at {iso(trade.created_at)}"
        )
    if not refused:
        click.echo("no refused trades")
        return
    click.echo(f"{len(refused)} refused record(s) in {refused_path_for(log_path)}, {unreadable} unreadable")
    if not requeue:
        return
    log = SettlementLog(log_path)
    try:
        log.open()
    except LogInUse:
        raise click.ClickException(
            "the gateway is running and owns the settlement log: stop it, then requeue"
        ) from None
    try:
        moved, left = log.requeue_refused()
    finally:
        log.close()
    click.echo(f"requeued {moved} trade(s): the gateway commits them when it next starts; {left} left")
