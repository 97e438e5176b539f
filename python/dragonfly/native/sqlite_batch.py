"""Typed facade over the native SQLite batch writer (`rust_core/io`, the native I/O crate).

The settlement batch (storage/sql/repos/settlement.py) is committed on a connection of its own, on a
thread of its own, with the GIL released for the whole transaction: binding every row, SQLite's work and
the WAL write at COMMIT cost the event loop nothing. Only the conversion of the rows into native values
runs on the caller's thread (`SqliteBatch.add`), a slice at a time.

A failed write raises `SqliteWriteError(kind, message)`, which the SQLite driver maps onto its own
errors: `unique` (a row already there), `constraint` (data refused), `transient` (locked or busy past the
timeout, I/O error, disk full: may pass), `other` (a bug).

The writer links the system libsqlite3 — the library Python's `sqlite3` module loads — so both
connections share the one table of POSIX locks SQLite keeps per process.
"""

from __future__ import annotations

from typing import Literal

from dragonfly._native import SqliteBatch, SqliteBatchWriter, SqliteWriteError

__all__ = ["SqliteBatch", "SqliteBatchWriter", "SqliteWriteError", "error_kind"]

Kind = Literal["unique", "constraint", "transient", "other"]


def error_kind(exc: SqliteWriteError) -> tuple[Kind, str]:
    """(kind, SQLite's message) of a failed write."""
    kind, message = exc.args
    return kind, str(message)
