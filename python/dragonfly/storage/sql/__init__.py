"""SQL drivers (SQLite embedded default, PostgreSQL via asyncpg) and their migrations."""

from dragonfly.storage.sql.connect import open_database

__all__ = ["open_database"]
