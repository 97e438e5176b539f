"""The settlement log file: records round-trip, an unfinished last record is dropped, a second owner is
refused, and a write the disk cannot finish leaves no partial record behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import MISSING, fields, replace
from pathlib import Path

import orjson
import pytest
from support.ledger_seed import make_trade

from dragonfly.storage.sql.repos.trades import TradeRow
from dragonfly.storage.sql.settlement_log import (
    SWAP_BYTES,
    LogInUse,
    SettlementLog,
    decode,
    encode,
    refused_path_for,
)

# One completed trade as the data plane settles it (the shared test builder), re-numbered per test.
_TRADE = make_trade(buyer="buyer-1", seller="seller-1", key_id="key-1", at_ms=1_780_000_000_000)
POSTINGS = _TRADE.postings


def _row(tid: str) -> TradeRow:
    return replace(_TRADE.row, id=tid)


def _v1(row: TradeRow) -> bytes:
    """A record as versions before the columnar one wrote it: the trade with its field names."""
    postings = [(p.account, p.amount) for p in POSTINGS]
    return orjson.dumps({"v": 1, "trade": row, "postings": postings}) + b"\n"


def test_record_round_trips_and_is_one_line() -> None:
    line = encode(_row("t-1"), POSTINGS)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    trade, postings = decode(line)
    assert trade == _row("t-1") and postings == POSTINGS


def test_a_record_from_another_trade_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        decode(b'{"v": 1, "trade": {"id": "x"}, "postings": []}')
    with pytest.raises(ValueError):
        decode(encode(_row("t-1"), POSTINGS).replace(b'"v":2', b'"v":3'))
    record = orjson.loads(encode(_row("t-1"), POSTINGS))
    with pytest.raises(ValueError):  # a column this version does not know
        decode(orjson.dumps({**record, "t": [*record["t"], "more"]}))
    with pytest.raises(ValueError):  # too few: a column without a default is missing
        decode(orjson.dumps({**record, "t": record["t"][:3]}))


def test_a_version_1_record_still_reads() -> None:
    """Logs and refused files written before the columnar record (field names as keys) stay readable."""
    row = _row("t-1")
    old = orjson.dumps(
        {"v": 1, "trade": row, "postings": [(p.account, p.amount) for p in POSTINGS]},
        option=orjson.OPT_APPEND_NEWLINE,
    )
    assert decode(old) == (row, POSTINGS)


def test_a_record_written_before_a_column_was_added_still_reads() -> None:
    """Columns are only ever added at the end of TradeRow, with a default: a shorter record reads with the
    defaults. The order of the columns a record holds never changes — this list is the order at version 2;
    moving a column would make old records read into the wrong fields, and needs a version 3."""
    v2_columns = [
        "id", "buyer_account_id", "key_id", "model", "upstream_model", "listing_id", "seller_account_id",
        "provider", "streamed", "status", "finish_reason", "error_code", "latency_ms", "ttft_ms",
        "tokens_prompt", "tokens_completion", "tokens_cached", "native_tokens_prompt",
        "native_tokens_completion", "counted_tokens_completion", "usage_audit", "hold_micros", "cost_micros",
        "seller_payout_micros", "platform_fee_micros", "attempts", "created_at", "settled_at", "price_unit",
        "characters_prompt", "counted_tokens_prompt", "input_price", "output_price", "cached_input_price",
    ]  # fmt: skip
    assert list(TradeRow.__dataclass_fields__)[: len(v2_columns)] == v2_columns
    record = orjson.loads(encode(_row("t-1"), POSTINGS))
    defaulted = [f for f in fields(TradeRow) if f.default is not MISSING]
    first = v2_columns.index(defaulted[0].name)
    trade, _ = decode(orjson.dumps({**record, "t": record["t"][:first]}))
    assert trade == replace(_row("t-1"), **{f.name: f.default for f in defaulted})


def test_reopen_returns_entries_in_order_and_drops_an_unfinished_last_record(tmp_path: Path) -> None:
    path = str(tmp_path / "db-settlements")
    log = SettlementLog(path)
    assert log.open() == []
    log.append(_row("t-1"), POSTINGS)
    log.append(_row("t-2"), [])
    log.close()
    with open(path, "ab") as f:  # a process that died inside its write
        f.write(encode(_row("t-3"), POSTINGS)[:40])
    again = SettlementLog(path)
    entries = again.open()
    assert [t.id for t, _ in entries] == ["t-1", "t-2"]
    assert entries[0][1] == POSTINGS and entries[1][1] == []
    again.append(_row("t-4"), POSTINGS)  # lands after the cut, not glued to the torn bytes
    again.close()
    assert [t.id for t, _ in SettlementLog(path).open()] == ["t-1", "t-2", "t-4"]


def test_reset_empties_the_log(tmp_path: Path) -> None:
    log = SettlementLog(str(tmp_path / "db-settlements"))
    log.open()
    log.append(_row("t-1"), POSTINGS)
    assert log.size > 0
    log.reset()
    assert log.size == 0
    log.append(_row("t-2"), POSTINGS)
    log.close()
    assert [t.id for t, _ in SettlementLog(log.path).open()] == ["t-2"]


def test_reset_of_a_large_log_swaps_in_a_fresh_file_that_stays_owned(tmp_path: Path) -> None:
    """Past SWAP_BYTES the log is replaced by a fresh, already locked file (the old one is closed on a
    thread, off the event loop): appends land in the new file and nobody else can take it meanwhile."""
    path = tmp_path / "db-settlements"
    log = SettlementLog(str(path))
    log.open()
    old_inode = path.stat().st_ino
    n = SWAP_BYTES // len(encode(_row("t-0"), POSTINGS)) + 1
    for i in range(n):
        log.append(_row(f"t-{i}"), POSTINGS)
    assert log.size > SWAP_BYTES
    log.reset()
    assert log.size == 0 and path.stat().st_ino != old_inode and path.stat().st_size == 0
    assert not Path(f"{path}.new").exists()
    with pytest.raises(LogInUse):
        SettlementLog(str(path)).open()
    log.append(_row("t-next"), POSTINGS)
    log.close()
    assert [t.id for t, _ in SettlementLog(str(path)).open()] == ["t-next"]


def test_a_swap_that_never_finished_is_cleaned_up_at_open(tmp_path: Path) -> None:
    path = tmp_path / "db-settlements"
    path.write_bytes(encode(_row("t-1"), POSTINGS))
    Path(f"{path}.new").write_bytes(b"")  # the process died between creating the fresh file and the rename
    assert [t.id for t, _ in SettlementLog(str(path)).open()] == ["t-1"]  # the old log, replayed
    assert not Path(f"{path}.new").exists()


def test_unreadable_record_is_set_aside_unchanged_and_the_log_can_be_emptied(tmp_path: Path) -> None:
    path = tmp_path / "db-settlements"
    odd = b'{"v": 9, "trade": {}}'
    path.write_bytes(encode(_row("t-1"), POSTINGS) + odd + b"\n")
    log = SettlementLog(str(path))
    assert [t.id for t, _ in log.open()] == ["t-1"]
    assert Path(refused_path_for(str(path))).read_bytes() == odd + b"\n"
    log.reset()
    log.close()
    assert path.read_bytes() == b""


def test_a_record_that_cannot_be_set_aside_pins_the_log(tmp_path: Path) -> None:
    path = tmp_path / "db-settlements"
    Path(refused_path_for(str(path))).mkdir()  # the refused file cannot be written
    path.write_bytes(encode(_row("t-1"), POSTINGS) + b'{"v": 9}\n')
    log = SettlementLog(str(path))
    assert [t.id for t, _ in log.open()] == ["t-1"]
    assert log.pinned
    log.reset()  # refused: the unreadable record has nowhere else to live
    log.close()
    assert b'{"v": 9}' in path.read_bytes()


def test_second_owner_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = str(tmp_path / "db-settlements")
    first = SettlementLog(path)
    first.open()
    with pytest.raises(LogInUse):
        SettlementLog(path).open()
    first.close()
    SettlementLog(path).open()


def test_a_write_the_disk_cannot_finish_raises_and_leaves_no_partial_record(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the kernel cut writes short at a size, as a full disk would (own process:
    # the limit must not reach pytest).
    path = tmp_path / "db-settlements"
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path[:0] = {sys.path!r}
        from tests.unit.test_settlement_log import POSTINGS, _row
        from dragonfly.storage.sql.settlement_log import SettlementLog, encode
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        one = len(encode(_row("t-0"), POSTINGS))
        log = SettlementLog({str(path)!r})
        log.open()
        log.append(_row("t-0"), POSTINGS)
        resource.setrlimit(resource.RLIMIT_FSIZE, (one + one // 2, one + one // 2))
        try:
            log.append(_row("t-1"), POSTINGS)
        except OSError as exc:
            print("refused", type(exc).__name__)
        log.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused"), out.stdout
    log = SettlementLog(str(path))
    assert [t.id for t, _ in log.open()] == ["t-0"]
    assert path.stat().st_size == len(encode(_row("t-0"), POSTINGS))


def test_a_record_from_before_the_speech_columns_still_reads() -> None:
    # Written by the version before trades had `price_unit` and `characters_prompt` (migration 009).
    record = orjson.loads(_v1(_row("t-old")))
    del record["trade"]["price_unit"], record["trade"]["characters_prompt"]
    trade, postings = decode(orjson.dumps(record))
    assert trade == _row("t-old") and trade.price_unit is None and postings == POSTINGS
    record["trade"]["unknown_column"] = 1
    with pytest.raises(ValueError):
        decode(orjson.dumps(record))
