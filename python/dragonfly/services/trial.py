"""The one-time trial credit (docs/operator.md, "Abuse limits"), granted in the transaction that verifies
an account's email. The verification succeeds whether or not the credit is granted; its answer and
`GET /api/auth/me` say which (`trial_credit_granted`).

The credit is granted when every rule below holds, in this order (the first that fails keeps it back):

1. `DRAGONFLY_TRIAL_CREDIT_MICROS` is above 0 and the account never had it.
2. No other account of the same mailbox had it (domain/abuse.py `email_identity`: `ada+1@example.com` and
   `a.da@gmail.com` are `ada@example.com` and `ada@gmail.com`).
3. The platform granted less than `DRAGONFLY_TRIAL_DAILY_TOTAL_MICROS` today, counting this one.
4. Fewer than `DRAGONFLY_TRIAL_PER_ADDRESS_PER_DAY` trials went today to accounts that signed up from the
   same address (IPv6: the same /64); the address the verification came from when the signup's is not
   known. Exempt addresses skip this rule.
5. Fewer than `DRAGONFLY_TRIAL_PER_DOMAIN_PER_DAY` trials went today to the email's domain (when set).

Days are UTC. Every count lives in the database (repos/trials.py), claimed by conditional upserts inside
the verification's transaction, so the rules hold across control planes and restarts; a claim that a later
rule refuses is given back in the same transaction. Addresses are stored as keyed digests only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta

from dragonfly.config import Settings
from dragonfly.domain.abuse import email_domain, email_identity, limit_subject
from dragonfly.domain.ledger import EXTERNAL_TRIAL, credit_postings
from dragonfly.storage.ports import Executor
from dragonfly.storage.sql.repos import accounts as accounts_repo
from dragonfly.storage.sql.repos import trials as repo
from dragonfly.storage.sql.repos.ledger import post_journal

log = logging.getLogger("dragonfly.trial")

KEEP_DAYS = 2  # quota rows older than this are deleted by the next grant


def address_digest(settings: Settings, client: str | None) -> str | None:
    """A keyed digest of the address a per-address quota counts; None for no or an exempt address."""
    subject = limit_subject(client, settings.limit_exempt_addresses) if client else None
    if subject is None:
        return None
    key = hashlib.sha256(b"dragonfly trial addresses\0" + settings.secret_key.encode()).digest()
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:32]


def day_of(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


async def record_origin(
    tx: Executor, settings: Settings, *, account_id: str, client: str | None, now: int
) -> None:
    """Remember where an account signed up (its address digest), for rule 4."""
    if client is not None:
        await repo.insert_origin(
            tx, account_id=account_id, address_digest=address_digest(settings, client), now=now
        )


async def grant(tx: Executor, settings: Settings, *, account_id: str, client: str | None, now: int) -> bool:
    """Grant the trial credit to a freshly verified account when the rules allow; True when granted."""
    amount = settings.trial_credit_micros
    account = await accounts_repo.get(tx, account_id)
    if amount <= 0 or account is None or account["trial_granted"]:
        return False
    day = day_of(now)
    known, digest = await repo.origin(tx, account_id)
    if not known:
        digest = address_digest(settings, client)
    quotas = [
        ("total", "*", amount, settings.trial_daily_total_micros),
        ("address", digest, 1, settings.trial_per_address_per_day),
        ("domain", email_domain(account["email"]), 1, settings.trial_per_domain_per_day),
    ]
    identity = email_identity(account["email"])
    if not await repo.claim_identity(tx, identity=identity, account_id=account_id, now=now):
        return _kept_back(account_id, "its mailbox had a trial credit already")
    claimed: list[tuple[str, str, int]] = []
    for scope, subject, n, limit in quotas:
        if subject is None or limit == 0:
            continue  # exempt address, or no such limit
        if not await repo.claim_quota(tx, day=day, scope=scope, subject=subject, amount=n, limit=limit):
            await _give_back(tx, day, claimed, identity, account_id)
            return _kept_back(account_id, f"the daily {scope} quota is used up")
        claimed.append((scope, subject, n))
    if not await accounts_repo.claim_trial(tx, account_id):  # another verification granted it meanwhile
        await _give_back(tx, day, claimed, identity, account_id)
        return False
    await post_journal(
        tx,
        kind="trial_credit",
        ref=account_id,
        postings=credit_postings(account_id, amount, EXTERNAL_TRIAL),
        now=now,
        memo="Trial credit",
    )
    old = datetime.fromtimestamp(now / 1000, tz=UTC) - timedelta(days=KEEP_DAYS)
    await repo.forget_before(tx, old.strftime("%Y-%m-%d"))
    return True


async def _give_back(
    tx: Executor, day: str, claimed: list[tuple[str, str, int]], identity: str, account_id: str
) -> None:
    for scope, subject, amount in claimed:
        await repo.release_quota(tx, day=day, scope=scope, subject=subject, amount=amount)
    await repo.release_identity(tx, identity=identity, account_id=account_id)


def _kept_back(account_id: str, why: str) -> bool:
    log.info("trial credit not granted to account %s: %s", account_id, why)
    return False
