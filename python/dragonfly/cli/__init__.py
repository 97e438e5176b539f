"""`dragonfly` command line: serve, migrate, admin."""

from __future__ import annotations

import asyncio

import click

from dragonfly.cli.admin import admin
from dragonfly.cli.serve import serve
from dragonfly.config import Settings
from dragonfly.simulate.cli import simulate
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.migrate import apply_migrations


@click.group()
def main() -> None:
    """Dragonfly: an OpenAI-compatible AI access layer with a market behind it."""


@main.command()
@click.option(
    "--database-url", envvar="DRAGONFLY_DATABASE_URL", default=None, help="sqlite:///… or postgresql://…"
)
def migrate(database_url: str | None) -> None:
    """Apply pending database migrations."""

    async def run() -> list[str]:
        settings = Settings.from_env(database_url=database_url)
        db = await open_database(settings.database_url, migrate=False)
        try:
            return await apply_migrations(db)
        finally:
            await db.close()

    applied = asyncio.run(run())
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


main.add_command(serve)
main.add_command(admin)
main.add_command(simulate)
