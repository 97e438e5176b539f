"""Open the configured database and bring its schema up to date."""

from __future__ import annotations

from dragonfly.storage.ports import Database
from dragonfly.storage.sql.migrate import apply_migrations
from dragonfly.storage.sql.postgres import PostgresDatabase
from dragonfly.storage.sql.sqlite import SqliteDatabase


def sqlite_path(url: str) -> str:
    # sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite://:memory:
    rest = url.split("://", 1)[1]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    return rest[1:] if rest.startswith("/") else rest


async def open_database(url: str, *, migrate: bool = True, pool_size: int = 10) -> Database:
    """`sqlite:///var/dragonfly.db` or `postgresql://user@host:port/db`."""
    db: SqliteDatabase | PostgresDatabase
    if url.startswith("sqlite:"):
        db = SqliteDatabase(sqlite_path(url))
    elif url.startswith(("postgres://", "postgresql://")):
        db = PostgresDatabase(url, max_size=pool_size)
    else:
        raise ValueError("unsupported database URL scheme (use sqlite:/// or postgresql://)")
    await db.connect()
    if migrate:
        await apply_migrations(db)
    return db
