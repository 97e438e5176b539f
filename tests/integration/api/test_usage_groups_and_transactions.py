"""Over HTTP against a real control plane, on both storage backends: usage by `key_group`
(`GET /api/usage/by-group`, `GET /api/usage/by-key?group=`) and the buyer's journal lines, whose ids are
UUIDs that stay the same from one read to the next while the cursor pages through them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from control_plane_support import ControlPlane, assert_error

from dragonfly.domain.ledger import buyer_cash

DAY_MS = 86_400_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _trade(api: ControlPlane, buyer: str, key_id: str, cost_micros: int, at_ms: int) -> None:
    """A settled trade row as the data plane writes it (the control plane only reads trades)."""
    api.query(
        "INSERT INTO trades (id, buyer_account_id, key_id, model, streamed, status, tokens_prompt,"
        " tokens_completion, hold_micros, cost_micros, created_at)"
        " VALUES ($1, $2, $3, 'demo/echo-1', 0, 'completed', 10, 5, 0, $4, $5) RETURNING id",
        str(uuid.uuid4()),
        buyer,
        key_id,
        cost_micros,
        at_ms,
    )


def _key(api: ControlPlane, session: str, body: dict[str, Any]) -> str:
    resp = api.call("POST", "/api/keys", session, json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_usage_by_group_and_by_key_of_one_group(api: ControlPlane) -> None:
    session = api.signup_verified("groups@example.com")
    me = api.call("GET", "/api/auth/me", session).json()["id"]
    a1 = _key(api, session, {"name": "a1", "key_group": "team-a"})
    a2 = _key(api, session, {"name": "a2", "key_group": "team-a"})
    b1 = _key(api, session, {"name": "b1", "key_group": "team-b"})
    d1 = _key(api, session, {"name": "d1"})  # the default group
    _key(api, session, {"name": "c1", "key_group": "team-c"})  # a group without trades
    now = int(time.time() * 1000)
    for key_id, cost, at in (
        (a1, 1_000, now),
        (a1, 1_000, now),
        (a1, 500, now - 10 * DAY_MS),
        (a2, 2_000, now),
        (b1, 4_000, now),
        (d1, 8_000, now),
    ):
        _trade(api, me, key_id, cost, at)
    # Another buyer's key in a group of the same name counts only for that buyer.
    other = api.signup_verified("other-groups@example.com")
    other_id = api.call("GET", "/api/auth/me", other).json()["id"]
    _trade(api, other_id, _key(api, other, {"key_group": "team-a"}), 16_000, now)

    def usage(requests: int, cost_usd: str) -> dict[str, Any]:
        return {
            "requests": requests,
            "prompt_tokens": 10 * requests,
            "completion_tokens": 5 * requests,
            "cost_usd": cost_usd,
        }

    groups = api.call("GET", "/api/usage/by-group", session)
    assert groups.status_code == 200, groups.text
    assert groups.json() == {
        "data": [
            {"key_group": "default", "keys": 1, **usage(1, "0.008000")},
            {"key_group": "team-a", "keys": 2, **usage(4, "0.004500")},
            {"key_group": "team-b", "keys": 1, **usage(1, "0.004000")},
        ]
    }
    recent = {"from": _iso(now - DAY_MS)}
    in_window = api.call("GET", "/api/usage/by-group", session, params=recent).json()["data"]
    assert [(g["key_group"], g["requests"]) for g in in_window] == [
        ("default", 1),
        ("team-a", 3),
        ("team-b", 1),
    ]

    team_a = api.call("GET", "/api/usage/by-key", session, params={"group": "team-a"}).json()["data"]
    assert sorted(team_a, key=lambda r: r["name"]) == [
        {"key_id": a1, "name": "a1", "key_group": "team-a", **usage(3, "0.002500")},
        {"key_id": a2, "name": "a2", "key_group": "team-a", **usage(1, "0.002000")},
    ]
    team_a_recent = api.call("GET", "/api/usage/by-key", session, params={"group": "team-a", **recent}).json()
    assert {(r["name"], r["requests"]) for r in team_a_recent["data"]} == {("a1", 2), ("a2", 1)}
    every_key = api.call("GET", "/api/usage/by-key", session).json()["data"]
    assert {r["name"]: r["key_group"] for r in every_key} == {
        "a1": "team-a",
        "a2": "team-a",
        "b1": "team-b",
        "d1": "default",
    }
    # A name a group may have, with no trades (or no keys): nothing to report.
    for quiet in ("team-c", "nobody"):
        assert api.call("GET", "/api/usage/by-key", session, params={"group": quiet}).json() == {"data": []}
    # Not a name a key's group may have (POST /api/keys refuses it the same way).
    for bad in ("Team-A", "team a", "x" * 65, "team-a\n", "tëam"):
        err = assert_error(
            api.call("GET", "/api/usage/by-key", session, params={"group": bad}), 400, "invalid_request"
        )
        assert err["param"] == "group"
    assert_error(api.call("GET", "/api/usage/by-group?from=yesterday", session), 400, "invalid_request")


def test_transaction_ids_are_uuids_that_stay_put_across_pages(api: ControlPlane) -> None:
    operator = api.make_operator("ops-tx@example.com")
    buyer = api.signup_verified("tx@example.com")  # the trial credit: the first line
    buyer_id = api.call("GET", "/api/auth/me", buyer).json()["id"]
    for n in range(4):
        credit = {"account_id": buyer_id, "amount_cents": 100 + n, "note": f"credit {n}"}
        assert api.call("POST", "/api/admin/credits", operator, json=credit).status_code == 201

    def walk() -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            resp = api.call("GET", "/api/billing/transactions", buyer, params=params)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            assert len(page["data"]) <= 2
            lines += page["data"]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                return lines
            params["cursor"] = page["next_cursor"]

    lines = walk()
    assert [(t["kind"], t["amount_usd"]) for t in lines] == [
        ("operator_credit", "1.030000"),
        ("operator_credit", "1.020000"),
        ("operator_credit", "1.010000"),
        ("operator_credit", "1.000000"),
        ("trial_credit", "0.100000"),
    ]
    ids = [t["id"] for t in lines]
    assert all(str(uuid.UUID(i)) == i for i in ids) and len(set(ids)) == len(ids)
    assert [t["id"] for t in walk()] == ids  # stored, not made up per request
    stored = api.query(
        "SELECT public_id FROM entries WHERE account = $1 ORDER BY id DESC", buyer_cash(buyer_id)
    )
    assert [r["public_id"] for r in stored] == ids
    assert_error(
        api.call("GET", "/api/billing/transactions", buyer, params={"cursor": ids[0]}), 400, "invalid_request"
    )
