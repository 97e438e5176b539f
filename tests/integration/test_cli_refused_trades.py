"""`dragonfly admin refused-trades`: the trades the database refused are listed, and with the gateway stopped
`--requeue` puts them back into the settlement log, whose next start commits them exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.ledger_seed import Trade, funded_market, make_trade

from dragonfly.cli.admin import admin
from dragonfly.gateway.settlement import SettlementWriter
from dragonfly.storage.ports import Database
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.settlement_log import SettlementLog, encode, log_path_for, refused_path_for

NOW = 1_780_000_000_000
GARBAGE = b'{"v": 99, "what": "a record from a future version"}\n'


@dataclass
class Setup:
    url: str
    log_path: str
    db: Database
    trades: list[Trade]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    """A funded market in a SQLite file, and a refused file beside its log: two trades and one record
    this version cannot read."""
    path = str(tmp_path / "df.db")
    db = await open_database(f"sqlite:///{path}")
    buyer, seller, key_id = await funded_market(db)
    trades = [make_trade(buyer=buyer, seller=seller, key_id=key_id, at_ms=NOW + i) for i in range(2)]
    log_path = log_path_for(path)
    first, second = (encode(t.row, t.postings) for t in trades)
    _write(refused_path_for(log_path), first + GARBAGE + second)
    try:
        yield Setup(f"sqlite:///{path}", log_path, db, trades)
    finally:
        await db.close()


def _write(path: str, data: bytes) -> None:  # a few hundred bytes: no need to leave the loop
    Path(path).write_bytes(data)


def _refused(setup: Setup) -> bytes:
    return Path(refused_path_for(setup.log_path)).read_bytes()


def _cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(admin, ["refused-trades", *args], env={"DRAGONFLY_DATABASE_URL": url})


async def test_lists_refused_trades_and_what_it_cannot_read(setup: Setup) -> None:
    out = _cli(setup.url)
    assert out.exit_code == 0, out.output
    for t in setup.trades:
        assert t.row.id in out.output
    assert "line 2: not readable" in out.output
    assert "3 refused record(s)" in out.output and "1 unreadable" in out.output
    assert _refused(setup).count(b"\n") == 3  # listing changes nothing


async def test_requeued_trades_are_committed_once_by_the_next_start(setup: Setup) -> None:
    out = _cli(setup.url, "--requeue")
    assert out.exit_code == 0, out.output
    assert "requeued 2 trade(s)" in out.output and "1 left" in out.output
    assert _refused(setup) == GARBAGE  # what this version cannot read stays for a person
    # The gateway's next start: the writer commits what the log holds before anything reads the books.
    writer = SettlementWriter(setup.db, SettlementLog(setup.log_path))
    await writer.start()
    await writer.close()
    rows = await setup.db.fetch_all("SELECT id, cost_micros FROM trades")
    assert sorted((r["id"], r["cost_micros"]) for r in rows) == sorted(
        (t.row.id, t.row.cost_micros) for t in setup.trades
    )
    journals = await setup.db.fetch_val("SELECT COUNT(*) FROM journals WHERE kind = 'trade'")
    assert journals == 2
    assert _cli(setup.url).output.count("refused record(s)") == 1  # only the unreadable one is left


async def test_requeue_refuses_while_the_gateway_owns_the_log(setup: Setup) -> None:
    running = SettlementLog(setup.log_path)
    running.open()  # what a started gateway holds (an exclusive flock)
    try:
        out = _cli(setup.url, "--requeue")
    finally:
        running.close()
    assert out.exit_code != 0
    assert "the gateway is running" in out.output
    assert _refused(setup).count(b"\n") == 3  # untouched


def test_no_settlement_log_without_the_embedded_default() -> None:
    out = _cli("postgresql://nobody@127.0.0.1:1/none")
    assert out.exit_code != 0 and "only on the embedded default" in out.output
    assert "nobody" not in out.output  # the database URL (it may carry a password) is never echoed
