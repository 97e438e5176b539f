"""`dragonfly` command line: serve, migrate, admin, simulate.

Subcommands are imported when they run, not when the group loads: `dragonfly serve` (and every test
that starts it) does not pay for the market simulator's imports (~0.2 s) or the admin commands', and
`dragonfly admin …` not for the simulator's."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import click

# name -> "module:attribute" of the click command.
_LAZY = {
    "serve": "dragonfly.cli.serve:serve",
    "admin": "dragonfly.cli.admin:admin",
    "simulate": "dragonfly.simulate.cli:simulate",
}


class _LazyGroup(click.Group):
    """A click group whose subcommands in `_LAZY` are imported on first use (click's documented
    lazy-loading pattern); `--help` imports them all to show their one-line help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        cmd: Any = getattr(importlib.import_module(module), attr)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{target} is not a click command")
        return cmd


@click.group(cls=_LazyGroup)
def main() -> None:
    """Dragonfly: an OpenAI-compatible AI access layer with a market behind it."""


@main.command()
@click.option(
    "--database-url", envvar="DRAGONFLY_DATABASE_URL", default=None, help="sqlite:///… or postgresql://…"
)
def migrate(database_url: str | None) -> None:
    """Apply pending database migrations."""
    from dragonfly.config import Settings
    from dragonfly.storage.sql import open_database
    from dragonfly.storage.sql.migrate import apply_migrations

    async def run() -> list[str]:
        settings = Settings.from_env(database_url=database_url)
        db = await open_database(settings.database_url, migrate=False)
        try:
            return await apply_migrations(db)
        finally:
            await db.close()

    applied = asyncio.run(run())
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
