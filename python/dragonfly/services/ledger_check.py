"""The ledger checker: verifies ARCHITECTURE.md invariants 1–3 on the database (and a state store, if given).

Checks (each names its violations by `check`):
  journal_unbalanced        every journal's entries sum to zero
  balance_mismatch          every stored balance equals the sum of its account's entries (both ways)
  negative_buyer_cash       no buyer:<id>:cash balance below zero
  negative_seller_earnings  no seller:<id>:locked|available|reserve|payouts_pending balance below zero
  key_budget_exceeded       no key's trade cost in any UTC month above its monthly budget; budgets have no
                            history, so every month is compared with the key's *current* budget (lowering a
                            budget below a month's spend is reported too)
  trade_amounts             cost <= hold for every trade with a hold; a charged trade had a hold; no negative
                            amounts; cost = seller payout + platform fee
  trade_journal             a `trade` journal exists iff cost > 0 and matches the trade: buyer cash debit =
                            cost, seller locked + reserve = seller payout, fees + rounding = platform fee,
                            no other account
  trade_journal_orphan      no `trade` journal without its trade
  release_settlement        every `earnings_release` journal has its settlement row of the same amount
  trade_review              a resolved review's trade is flagged; a dismissed one refunds nothing; an upheld
                            one has a `review_refund` journal iff it refunded something, refund <= cost,
                            buyer line = refund, every other line a debit of the trade's seller (locked,
                            reserve) or the platform (fees, rounding); no refund journal without its review
  review_hold               a seller's open reviews hold no more than its locked and reserve balances have
  payout_journal            each payout has its `payout_request` journal (available -> payouts pending, its
                            amount), a paid one its `payout_paid` journal (payouts pending -> external), a
                            pending one none; no payout journal without its payout
  credit_request            an operator credit made with an idempotency key has its one `operator_credit`
                            journal, crediting the buyer's cash its amount, and the balance its answer showed
  state_balance / state_key_spend
                            a state store's counters agree with the database (only with `state`; see
                            `_state` for the hooks it looks for)

At most one trade per request id is the trades primary key: the database itself refuses a second row.
State checks compare settled values; run them when no request is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dragonfly.domain.ledger import buyer_cash
from dragonfly.domain.money import cents_to_micros
from dragonfly.ids import now_ms
from dragonfly.storage.ports import Database
from dragonfly.storage.sql.repos import checks
from dragonfly.storage.sql.repos.ledger import balances_with_prefix

MAX_PER_CHECK = 1000


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Counts:
    journals: int
    entries: int
    trades: int


async def counts(db: Database) -> Counts:
    row = await checks.counts(db)
    return Counts(int(row["journals"]), int(row["entries"]), int(row["trades"]))


async def check_ledger(db: Database, state: Any = None) -> list[Violation]:
    out: list[Violation] = []
    out += await _journals(db)
    out += await _balances(db)
    out += await _budgets(db)
    out += await _trades(db)
    out += await _reviews_and_payouts(db)
    if state is not None:
        out += await _state(db, state)
    return out


async def _journals(db: Database) -> list[Violation]:
    out = [
        Violation(
            "journal_unbalanced", f"journal {r['id']}", f"{r['kind']}/{r['ref']} sums to {int(r['total'])}"
        )
        for r in await checks.unbalanced_journals(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("trade_journal_orphan", f"journal {r['id']}", f"trade journal for missing trade {r['ref']}")
        for r in await checks.orphan_trade_journals(db, MAX_PER_CHECK)
    ]
    out += [
        Violation(
            "release_settlement",
            f"release {r['ref']}",
            f"journal released {int(r['released'])}, settlement row says {int(r['settled'])}",
        )
        for r in await checks.release_settlement_mismatches(db, MAX_PER_CHECK)
    ]
    return out


async def _balances(db: Database) -> list[Violation]:
    out = [
        Violation(
            "balance_mismatch",
            str(r["account"]),
            f"stored {int(r['stored'])}, entries sum to {int(r['summed'])}",
        )
        for r in await checks.balance_mismatches(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("negative_buyer_cash", str(r["account"]), f"balance {int(r['amount'])}")
        for r in await checks.negative_balances(db, "buyer:%:cash", MAX_PER_CHECK)
    ]
    for suffix in ("locked", "available", "reserve", "payouts_pending"):
        out += [
            Violation("negative_seller_earnings", str(r["account"]), f"balance {int(r['amount'])}")
            for r in await checks.negative_balances(db, f"seller:%:{suffix}", MAX_PER_CHECK)
        ]
    return out


async def _budgets(db: Database) -> list[Violation]:
    return [
        Violation(
            "key_budget_exceeded",
            f"key {r['key_id']} {r['month']}",
            f"spent {int(r['spent'])} micro-USD, current budget"
            f" {cents_to_micros(int(r['monthly_budget_cents']))} micro-USD",
        )
        for r in await checks.keys_over_budget(db, db.dialect, MAX_PER_CHECK)
    ]


def _trade_journal_detail(r: dict[str, Any]) -> str:
    cost, payout, fee = int(r["cost_micros"]), int(r["seller_payout_micros"]), int(r["platform_fee_micros"])
    if r["journal_id"] is None:
        return f"cost {cost} but no trade journal"
    if cost == 0:
        return f"cost 0 but journal {r['journal_id']} exists"
    return (
        f"journal {r['journal_id']}: buyer {int(r['buyer'])} (want {-cost}), seller {int(r['seller'])}"
        f" (want {payout}), platform {int(r['platform'])} (want {fee}), other lines {int(r['foreign_lines'])}"
    )


async def _trades(db: Database) -> list[Violation]:
    out = [
        Violation(
            "trade_amounts",
            f"trade {r['id']}",
            f"hold {int(r['hold_micros'])}, cost {int(r['cost_micros'])}, seller payout"
            f" {int(r['seller_payout_micros'])}, platform fee {int(r['platform_fee_micros'])}",
        )
        for r in await checks.bad_trade_amounts(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("trade_journal", f"trade {r['id']}", _trade_journal_detail(r))
        for r in await checks.trade_journal_mismatches(db, MAX_PER_CHECK)
    ]
    return out


def _review_detail(r: dict[str, Any]) -> str:
    if r["usage_audit"] != "flagged":
        return f"{r['state']} review of a trade whose usage audit is {r['usage_audit']}"
    refund, cost = int(r["refund_micros"]), int(r["cost_micros"])
    journal = "no refund journal" if r["journal_id"] is None else f"refund journal {r['journal_id']}"
    return (
        f"{r['state']}, refund {refund} of cost {cost}, {journal}: buyer {int(r['buyer'])},"
        f" lines outside the trade's accounts or not debits {int(r['foreign_lines'])}"
    )


def _payout_detail(r: dict[str, Any]) -> str:
    amount = int(r["amount_micros"])
    return (
        f"{r['status']} payout of {amount}: request journal {'yes' if int(r['requested']) else 'no'}"
        f" (available {int(r['request_available'])}, pending {int(r['request_pending'])}), paid journal"
        f" {'yes' if int(r['paid']) else 'no'} (pending {int(r['paid_pending'])}, external"
        f" {int(r['paid_external'])}), other lines {int(r['foreign_lines'])}"
    )


async def _reviews_and_payouts(db: Database) -> list[Violation]:
    out = [
        Violation("trade_review", f"trade {r['trade_id']}", _review_detail(r))
        for r in await checks.review_mismatches(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("trade_review", f"journal {r['id']}", f"refund journal without its review {r['ref']}")
        for r in await checks.orphan_review_journals(db, MAX_PER_CHECK)
    ]
    out += [
        Violation(
            "review_hold",
            f"seller {r['seller']}",
            f"open reviews hold {int(r['held_locked'])} locked and {int(r['held_reserve'])} reserve;"
            f" balances are {int(r['locked'])} locked and {int(r['reserve'])} reserve",
        )
        for r in await checks.uncovered_review_holds(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("payout_journal", f"payout {r['id']}", _payout_detail(r))
        for r in await checks.payout_mismatches(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("payout_journal", f"journal {r['id']}", f"{r['kind']} without its payout {r['ref']}")
        for r in await checks.orphan_payout_journals(db, MAX_PER_CHECK)
    ]
    out += [
        Violation("credit_request", f"credit {r['credit_id']}", _credit_detail(r))
        for r in await checks.credit_request_mismatches(db, MAX_PER_CHECK)
    ]
    return out


def _credit_detail(r: Any) -> str:
    balance = "recorded" if r["balance_micros"] is not None else "missing"
    return (
        f"keyed credit of {int(r['amount_micros'])} to {r['account_id']}: {int(r['journals'])} journal(s)"
        f" crediting {int(r['credited'])}, balance {balance}"
    )


def _month_window(at_ms: int) -> tuple[int, int]:
    now = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def _state(db: Database, state: Any) -> list[Violation]:
    """Duck-typed hooks of a state store, whichever it has:
    - `snapshot_balances() -> {account id or ledger account: settled micros}`: must equal the database;
    - `account_view(account_id) -> view | None` (`balance_micros`, `pending_micros`): the store's settled
      balance (`balance - pending`) may lag below the database until the next re-seed (fail closed) but
      must never be above it (it would admit spend the database does not have);
    - `snapshot_key_spend() -> {key id: micros spent this UTC month}`: must equal the database."""
    out: list[Violation] = []
    stored = await balances_with_prefix(db, "buyer:")
    snapshot_balances = getattr(state, "snapshot_balances", None)
    account_view = getattr(state, "account_view", None)
    if snapshot_balances is not None:
        for name, amount in sorted((await snapshot_balances()).items()):
            account = name if ":" in name else buyer_cash(name)
            want = stored.get(account, 0)
            if int(amount) != want:
                out.append(Violation("state_balance", account, f"state store {int(amount)}, database {want}"))
    elif account_view is not None:
        for account, want in sorted(stored.items()):
            view = await account_view(account.split(":")[1])
            if view is None:
                continue  # not seeded: the store loads it from the database on first use
            settled = int(view.balance_micros) - int(view.pending_micros)
            if settled > want:
                out.append(
                    Violation(
                        "state_balance", account, f"state store settled {settled} above database {want}"
                    )
                )
    snapshot_key_spend = getattr(state, "snapshot_key_spend", None)
    if snapshot_key_spend is not None:
        start, end = _month_window(now_ms())
        spent = await checks.key_spend(db, start, end)
        for key_id, amount in sorted((await snapshot_key_spend()).items()):
            want = spent.get(key_id, 0)
            if int(amount) != want:
                out.append(
                    Violation(
                        "state_key_spend", f"key {key_id}", f"state store {int(amount)}, database {want}"
                    )
                )
    return out
