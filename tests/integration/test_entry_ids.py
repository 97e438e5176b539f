"""Journal lines carry a stable UUID (`entries.public_id`, migration 014) on both SQL backends: lines
written before the migration get a deterministic one, every writer gives a new line a UUIDv7, and the
buyer's transaction list shows them, page after page, unchanged."""

from __future__ import annotations

import uuid

import pytest
from support.ledger_seed import make_trade, new_account, new_buyer_key, write_trades

from dragonfly.domain.ledger import buyer_cash, credit_postings
from dragonfly.ids import now_ms
from dragonfly.services import billing
from dragonfly.storage.sql import open_database
from dragonfly.storage.sql.migrate import apply_migrations
from dragonfly.storage.sql.repos import ledger
from dragonfly.storage.sql.repos.settlement import settlement_steps


def _backfilled(entry_id: int, created_at: int) -> str:
    """The documented backfill (014_entry_ids.sql), built from bits: a UUIDv8 with the line's epoch
    milliseconds in the first 48 bits and its integer id in the last 48."""
    return str(uuid.UUID(int=(created_at << 80) | (0x8 << 76) | (0b10 << 62) | entry_id))


async def test_the_migration_gives_earlier_lines_a_deterministic_uuid(database_url: str) -> None:
    db = await open_database(database_url, migrate=False)
    try:
        await apply_migrations(db, through=13)
        lines = [
            ("external:credit", -5, 1_733_000_000_123),
            ("cash:a", 3, 1_733_000_000_123),
            ("cash:b", 2, 0),
        ]
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO journals (id, kind, ref, memo, created_at)"
                " VALUES ($1, 'operator_credit', 'r', NULL, 1)",
                str(uuid.uuid4()),
            )
            journal_id = await tx.fetch_val("SELECT id FROM journals")
            for account, amount, at in lines:
                await tx.execute(
                    "INSERT INTO entries (journal_id, account, amount, created_at) VALUES ($1, $2, $3, $4)",
                    journal_id,
                    account,
                    amount,
                    at,
                )
        before = await db.fetch_all("SELECT id, created_at FROM entries ORDER BY id")

        assert "014_entry_ids.sql" in await apply_migrations(db)

        after = await db.fetch_all("SELECT id, public_id FROM entries ORDER BY id")
        assert [r["public_id"] for r in after] == [
            _backfilled(int(r["id"]), int(r["created_at"])) for r in before
        ]
        for row in after:
            parsed = uuid.UUID(row["public_id"])
            assert str(parsed) == row["public_id"] and parsed.version == 8 and parsed.variant == uuid.RFC_4122
        assert after[2]["public_id"].startswith("00000000-0000-8000-8000-")  # created_at 0
        # The guard the backfill lifted is back: lines stay append-only.
        with pytest.raises(Exception, match="append-only"):
            await db.execute("UPDATE entries SET amount = amount + 1")
        with pytest.raises(Exception, match="append-only"):
            await db.execute("DELETE FROM entries")
        # A writer that names no public_id: refused on SQLite; on PostgreSQL (an earlier version still
        # running during a rolling upgrade) the line gets a random UUID.
        unnamed = "INSERT INTO entries (journal_id, account, amount, created_at) VALUES ($1, 'x', 0, 2)"
        if db.dialect == "sqlite":
            with pytest.raises(Exception, match="public_id"):
                await db.execute(unnamed, journal_id)
        else:
            await db.execute(unnamed, journal_id)
            given = await db.fetch_val("SELECT public_id FROM entries WHERE account = 'x'")
            assert uuid.UUID(given).version == 4
        assert await apply_migrations(db) == []
        assert [r["public_id"] for r in await db.fetch_all("SELECT public_id FROM entries ORDER BY id")][
            :3
        ] == [r["public_id"] for r in after]
    finally:
        await db.close()


async def test_every_writer_gives_lines_a_uuid_and_pages_show_them_unchanged(database_url: str) -> None:
    db = await open_database(database_url)
    try:
        buyer, seller = await new_account(db, "buyer"), await new_account(db, "seller")
        key_id = await new_buyer_key(db, buyer)
        for n in range(3):  # `post_journal`: credits, the trial credit, earnings releases
            async with db.transaction() as tx:
                await ledger.post_journal(
                    tx,
                    kind="operator_credit",
                    ref=f"c{n}",
                    postings=credit_postings(buyer, 1_000_000),
                    now=now_ms(),
                )
        trades = [make_trade(buyer=buyer, seller=seller, key_id=key_id, at_ms=now_ms()) for _ in range(4)]
        # The settlement writer's batch (the columnar shape on PostgreSQL) ...
        await write_trades(db, trades[:3])
        # ... and the guarded per-trade shape it falls back to after a replayed request id.
        await db.write_batch(settlement_steps([(trades[3].row, trades[3].postings)]))

        every = [r["public_id"] for r in await db.fetch_all("SELECT public_id FROM entries")]
        trade_lines = sum(1 for t in trades for p in t.postings if p.amount != 0)
        assert len(every) == 3 * 2 + trade_lines and len(set(every)) == len(every)
        assert all(uuid.UUID(value).version == 7 for value in every)

        def ids(lines: list[dict[str, object]]) -> list[object]:
            return [line["id"] for line in lines]

        seen: list[dict[str, object]] = []
        cursor: int | None = None
        while True:
            page = await billing.transactions(db, buyer, limit=3, cursor=cursor)
            seen += page["data"]
            if not page["has_more"]:
                break
            cursor = int(page["next_cursor"])
        cash = await db.fetch_all(
            "SELECT public_id FROM entries WHERE account = $1 ORDER BY id DESC", buyer_cash(buyer)
        )
        assert ids(seen) == [r["public_id"] for r in cash] and len(seen) == 7
        assert [line["kind"] for line in seen] == ["trade"] * 4 + ["operator_credit"] * 3
        whole = await billing.transactions(db, buyer, limit=100, cursor=None)
        assert ids(whole["data"]) == ids(seen) and whole["next_cursor"] is None
    finally:
        await db.close()
