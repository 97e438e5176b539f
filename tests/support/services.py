"""The throwaway services tests may ask for (started lazily, once per session, by tests/conftest.py)."""

from support.postgres_cluster import PostgresCluster, find_pg_bindir
from support.redis_server import RedisServer

__all__ = ["PostgresCluster", "RedisServer", "find_pg_bindir"]
