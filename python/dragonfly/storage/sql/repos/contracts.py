"""Contracts between a listing and the market, their check history, and admission probe runs."""

from __future__ import annotations

from typing import Any

import orjson

from dragonfly.storage.ports import Executor, Row


def _decode_contract(row: Row) -> Row:
    out = dict(row)
    out["terms"] = orjson.loads(out["terms"] or "{}")
    return out


async def insert(
    tx: Executor, *, contract_id: str, listing_id: str, status: str, terms: dict[str, Any], now: int
) -> None:
    await tx.execute(
        "INSERT INTO contracts (id, listing_id, status, terms, since, reason)"
        " VALUES ($1, $2, $3, $4, $5, NULL)",
        contract_id,
        listing_id,
        status,
        orjson.dumps(terms).decode(),
        now,
    )


async def current_for_listing(db: Executor, listing_id: str) -> Row | None:
    row = await db.fetch_one(
        "SELECT id, listing_id, status, terms, since, reason FROM contracts WHERE listing_id = $1"
        " ORDER BY since DESC, id DESC LIMIT 1",
        listing_id,
    )
    return _decode_contract(row) if row else None


async def list_for_listing(db: Executor, listing_id: str) -> list[Row]:
    rows = await db.fetch_all(
        "SELECT id, listing_id, status, terms, since, reason FROM contracts WHERE listing_id = $1"
        " ORDER BY since DESC, id DESC",
        listing_id,
    )
    return [_decode_contract(r) for r in rows]


async def get_owned(db: Executor, *, account_id: str, contract_id: str) -> Row | None:
    row = await db.fetch_one(
        "SELECT c.id, c.listing_id, c.status, c.terms, c.since, c.reason FROM contracts c"
        " JOIN listings l ON l.id = c.listing_id"
        " WHERE c.id = $1 AND l.account_id = $2 AND l.deleted_at IS NULL",
        contract_id,
        account_id,
    )
    return _decode_contract(row) if row else None


async def set_status(tx: Executor, *, contract_id: str, status: str, reason: str | None, now: int) -> None:
    await tx.execute(
        "UPDATE contracts SET status = $2, reason = $3, since = CASE WHEN status = $2 THEN since ELSE $4 END"
        " WHERE id = $1",
        contract_id,
        status,
        reason,
        now,
    )


async def set_status_if(
    tx: Executor, *, contract_id: str, expected: str, status: str, reason: str | None, now: int
) -> bool:
    """Move the contract from `expected` to `status`; False when it is no longer `expected` (another
    instance, a probe or an operator moved it first)."""
    n = await tx.execute(
        "UPDATE contracts SET status = $3, reason = $4, since = $5 WHERE id = $1 AND status = $2",
        contract_id,
        expected,
        status,
        reason,
        now,
    )
    return n > 0


async def set_terms(tx: Executor, *, contract_id: str, terms: dict[str, Any]) -> None:
    await tx.execute(
        "UPDATE contracts SET terms = $2 WHERE id = $1", contract_id, orjson.dumps(terms).decode()
    )


async def add_checks(
    tx: Executor, *, contract_id: str, checks: list[tuple[str, str, bool, str | None, int]]
) -> None:
    """`checks`: (check id, kind, passed, detail, at)."""
    await tx.execute_many(
        "INSERT INTO contract_checks (id, contract_id, kind, passed, detail, at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (cid, contract_id, kind, 1 if passed else 0, detail, at)
            for cid, kind, passed, detail, at in checks
        ],
    )


async def list_checks(db: Executor, contract_id: str, *, limit: int = 200) -> list[Row]:
    rows = await db.fetch_all(
        "SELECT id, kind, passed, detail, at FROM contract_checks WHERE contract_id = $1"
        " ORDER BY at DESC, id DESC LIMIT $2",
        contract_id,
        limit,
    )
    return [{**r, "passed": bool(r["passed"])} for r in rows]


async def insert_probe_run(tx: Executor, run: dict[str, Any]) -> None:
    await tx.execute(
        "INSERT INTO probe_runs (id, listing_id, contract_id, passed, ttft_ms, latency_ms, checks,"
        " started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        run["id"],
        run["listing_id"],
        run["contract_id"],
        1 if run["passed"] else 0,
        run["ttft_ms"],
        run["latency_ms"],
        orjson.dumps(run["checks"]).decode(),
        run["started_at"],
        run["finished_at"],
    )


async def list_probe_runs(db: Executor, listing_id: str, *, limit: int = 50) -> list[Row]:
    rows = await db.fetch_all(
        "SELECT id, listing_id, contract_id, passed, ttft_ms, latency_ms, checks, started_at, finished_at"
        " FROM probe_runs WHERE listing_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        listing_id,
        limit,
    )
    return [{**r, "passed": bool(r["passed"]), "checks": orjson.loads(r["checks"] or "[]")} for r in rows]
