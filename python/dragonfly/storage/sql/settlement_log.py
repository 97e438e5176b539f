"""The settlement log: an append-only file beside the SQLite database that holds settled trades until the
settlement writer has committed them to the database (embedded mode only; see ARCHITECTURE.md).

A trade is durable once `append` returns: its record is in the kernel's page cache, which survives the
process being killed (kill -9) exactly as SQLite's own WAL does with `synchronous=NORMAL` — neither
survives a power cut, neither needs an fsync per trade. One `write` of one line per trade costs a few µs
on the event loop; the database commit it replaces (~24 WAL frames for one trade) cost ~300 µs.

Format: one JSON object per line, `{"v": 2, "t": [...the trade's columns], "p": [[account, amount], ...]}`:
the trade as its columns in `TradeRow` field order (what orjson makes of a tuple in ~0.8 µs; of the
dataclass, with every field name, ~2.9). Columns are only ever added at the end of `TradeRow`, with a
default, so a record with fewer columns (an older version's) still reads; one with more is refused.
Version 1 records, `{"v": 1, "trade": {...field: value}, "postings": [...]}`, are still read (a log or a
refused file written before the change). orjson never emits a raw newline, so a line is a record; a last
line without its newline is a write that never finished (the process died inside it, so the buyer never
got the response) and is ignored.

Only one process may own a log: an exclusive `flock` is taken at open, and a second data-plane worker on
the same data directory is refused at start.

A record the database refuses for itself, or one this version cannot read, is moved (fsync'd) to
`<log>-refused`, unchanged, for a person to look at (`dragonfly admin refused-trades` lists them and, with
the gateway stopped, `--requeue` puts them back into the log, which replays them at the next start); the
log itself can then be emptied as usual.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, fields

import orjson

from dragonfly.domain.ledger import Posting
from dragonfly.storage.sql.connect import sqlite_path
from dragonfly.storage.sql.repos.trades import TradeRow, as_params

log = logging.getLogger("dragonfly.storage.settlement_log")

VERSION = 2
_TRADE_ORDER = tuple(f.name for f in fields(TradeRow))
_TRADE_FIELDS = frozenset(_TRADE_ORDER)
# Columns added after the format was first written: a record without them (an older version's) still reads.
_DEFAULTED_FIELDS = frozenset(f.name for f in fields(TradeRow) if f.default is not MISSING)

Entry = tuple[TradeRow, list[Posting]]


class LogInUse(RuntimeError):
    """Another process owns this settlement log (a second data-plane worker on one data directory)."""


def log_path_for(sqlite_path: str) -> str:
    return sqlite_path + "-settlements"


def log_path_for_url(database_url: str) -> str | None:
    """The settlement log beside a SQLite database file; None for PostgreSQL or an in-memory database."""
    if not database_url.startswith("sqlite:"):
        return None
    path = sqlite_path(database_url)
    return None if path == ":memory:" else log_path_for(path)


def refused_path_for(log_path: str) -> str:
    return log_path + "-refused"


def encode(trade: TradeRow, postings: list[Posting]) -> bytes:
    record = {"v": VERSION, "t": as_params(trade), "p": [(p.account, p.amount) for p in postings]}
    return orjson.dumps(record) + b"\n"


def decode(line: bytes) -> Entry:
    record = orjson.loads(line)
    version = record.get("v")
    if version == VERSION:
        columns = record["t"]
        if not isinstance(columns, list) or len(columns) > len(_TRADE_ORDER):
            raise ValueError("settlement log record does not match this version's trade columns")
        raw = dict(zip(_TRADE_ORDER, columns, strict=False))
        postings = record["p"]
    elif version == 1:
        raw, postings = record["trade"], record["postings"]
    else:
        raise ValueError(f"unknown settlement log record version {version!r}")
    names = set(raw)
    if not names <= _TRADE_FIELDS or not _TRADE_FIELDS - names <= _DEFAULTED_FIELDS:
        raise ValueError("settlement log record does not match this version's trade columns")
    return TradeRow(**raw), [Posting(str(a), int(m)) for a, m in postings]


def read_refused(log_path: str) -> list[tuple[int, Entry | None]]:
    """The refused file beside a log, as (line number, entry) — entry None for a record this version cannot
    read (or a last line cut short). Empty when there is no file."""
    return [(n, entry) for n, _, entry in _refused_records(refused_path_for(log_path))]


def _refused_records(path: str) -> list[tuple[int, bytes, Entry | None]]:
    """Every non-blank line of a refused file: (line number, the line, its entry or None if unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [
        (n, line, _decoded(line)) for n, line in enumerate(data.splitlines(keepends=True), 1) if line.strip()
    ]


def _decoded(line: bytes) -> Entry | None:
    if not line.endswith(b"\n"):
        return None
    try:
        return decode(line)
    except (ValueError, KeyError, TypeError):
        return None


# `reset` swaps files instead of truncating past this size (truncating 256 KiB takes ~25 µs).
SWAP_BYTES = 256 * 1024
_CLOSER: ThreadPoolExecutor | None = None


def _closer() -> ThreadPoolExecutor:
    global _CLOSER
    if _CLOSER is None:
        _CLOSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settlement-log-close")
    return _CLOSER


def _fresh_locked(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


class SettlementLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._size = 0
        self.pinned = False  # a record could not be set aside: never empty the log, keep it for a person

    def open(self) -> list[Entry]:
        """Take the log (exclusively) and return the entries it still holds, oldest first."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogInUse(f"settlement log {self.path} is held by another data-plane process") from None
        self._fd = fd
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path + ".new")  # a `reset` that never finished
        with open(self.path, "rb") as f:
            data = f.read()
        entries: list[Entry] = []
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("settlement log: ignoring an unfinished last record (%d bytes)", len(data) - end)
        for n, line in enumerate(data[:end].splitlines(), 1):
            if not line:
                continue
            try:
                entries.append(decode(line))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("settlement log: record %d unreadable (%s): set aside", n, type(exc).__name__)
                self.set_aside(line + b"\n")
        if end < len(data):
            os.ftruncate(fd, end)
        self._size = end
        return entries

    @property
    def size(self) -> int:
        return self._size

    def append(self, trade: TradeRow, postings: list[Posting]) -> None:
        """Durable (against a process crash) when this returns; raises OSError when it is not."""
        self._write(encode(trade, postings))

    def _write(self, data: bytes) -> None:
        """Whole records or nothing: a failed or short write (disk full part-way) is cut back out."""
        try:
            written = os.write(self._fd, data)
        except OSError:
            self._cut()
            raise
        if written != len(data):
            self._cut()
            raise OSError(f"settlement log: short write ({written} of {len(data)} bytes)")
        self._size += written

    def _cut(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            log.error("settlement log: could not remove a partial record: %s", type(exc).__name__)

    def set_aside(self, line: bytes) -> None:
        """Move one record out of the way for good: appended to the refused file and fsync'd. If that
        fails the log is pinned (never emptied), so the record is still not lost."""
        path = refused_path_for(self.path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError("short write")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.pinned = True
            log.error(
                "settlement log: could not set a record aside (%s); the log is kept whole", type(exc).__name__
            )

    def set_aside_entry(self, trade: TradeRow, postings: list[Posting]) -> None:
        self.set_aside(encode(trade, postings))

    def requeue_refused(self) -> tuple[int, int]:
        """Move the refused file's readable records back into this log (open, so no gateway owns it), where
        the next start commits them — or sets them aside again if the database still refuses them. Records
        this version cannot read stay in the refused file. Returns (requeued, left).

        Crash-safe by order: the records are in the log (fsync'd) before they leave the refused file; a
        crash in between leaves them in both, and committing a trade twice is a no-op."""
        path = refused_path_for(self.path)
        records = _refused_records(path)
        if not records:
            return 0, 0
        good = [line for _, line, entry in records if entry is not None]
        bad = [line for _, line, entry in records if entry is None]
        if good:
            self._write(b"".join(good))
            os.fsync(self._fd)
        if bad:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(b"".join(bad))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            os.unlink(path)
        return len(good), len(bad)

    def reset(self) -> None:
        """Empty the log: call only when every entry in it is committed to the database or set aside.

        The kernel frees a file's pages in the call that empties it, ~0.1 ms per MB, and under a steady
        load the log is empty only now and then, grown to several MB: past `SWAP_BYTES` a fresh file
        (locked before it takes the name) replaces the log, and the old descriptor is closed on a thread,
        where its pages are freed. A crash in between leaves the old log, all committed: replayed, a no-op."""
        if self.pinned:
            return
        if self._size > SWAP_BYTES:
            try:
                fd = _fresh_locked(self.path + ".new")
                os.rename(self.path + ".new", self.path)
            except OSError as exc:
                log.warning(
                    "settlement log: could not swap in a fresh file (%s); truncating", type(exc).__name__
                )
            else:
                old, self._fd, self._size = self._fd, fd, 0
                _closer().submit(os.close, old)
                return
        os.ftruncate(self._fd, 0)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1
