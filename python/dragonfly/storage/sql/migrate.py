"""Ordered, per-dialect SQL migrations, applied once each and recorded in `schema_migrations`."""

from __future__ import annotations

import time
from importlib import resources

from dragonfly.storage.ports import Database


def _migration_files(dialect: str) -> list[tuple[int, str, str]]:
    folder = resources.files("dragonfly.storage.sql") / "migrations" / dialect
    out = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            out.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def _statements(script: str) -> list[str]:
    # Migrations hold no procedural bodies, so `;` at a line end separates statements.
    parts, buf = [], []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip().rstrip(";").strip()
            if stmt:
                parts.append(stmt)
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        parts.append(tail)
    return parts


async def apply_migrations(db: Database, *, through: int | None = None) -> list[str]:
    """Apply pending migrations (those numbered up to `through`, when given: tests of a migration's
    backfill); returns the names applied. Safe to run concurrently from several processes: each migration
    runs in one transaction and is recorded under a primary key."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at BIGINT NOT NULL)"
    )
    applied = []
    for version, name, script in _migration_files(db.dialect):
        if through is not None and version > through:
            break
        async with db.transaction() as tx:
            if db.dialect == "postgres":
                # Serialise concurrent migrators (two instances starting together).
                await tx.execute("SELECT pg_advisory_xact_lock(7243001)")
            done = await tx.fetch_val("SELECT 1 FROM schema_migrations WHERE version = $1", version)
            if done:
                continue
            for stmt in _statements(script):
                await tx.execute(stmt)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                version,
                name,
                int(time.time() * 1000),
            )
            applied.append(name)
    return applied
