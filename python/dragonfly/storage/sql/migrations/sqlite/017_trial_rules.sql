-- The one-time trial credit's rules (services/trial.py; docs/operator.md "Abuse limits"). Identical on
-- SQLite and PostgreSQL: keep it in step with the other dialect's 017_trial_rules.sql.

-- Where each account signed up: a keyed digest of the client address (IPv6 by its /64), never the address
-- itself; NULL when the address is exempt from the limits. The per-address trial quota counts it.
CREATE TABLE signup_origins (
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  address_digest TEXT,
  created_at BIGINT NOT NULL
);

-- One trial per mailbox: the address in lower case, a `+tag` dropped, and at gmail.com the dots too
-- (domain/abuse.py `email_identity`). Trials granted before this table existed are not in it.
CREATE TABLE trial_identities (
  identity TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  granted_at BIGINT NOT NULL
);

-- Daily quotas per UTC day (`YYYY-MM-DD`), counted by conditional upserts, so that concurrent
-- verifications on any number of control planes never pass a limit: scope `total` (micro-USD granted,
-- platform-wide, subject '*'), `address` (grants per signup address digest), `domain` (grants per email
-- domain). Rows older than two days are deleted by the next grant.
CREATE TABLE trial_quotas (
  day TEXT NOT NULL,
  scope TEXT NOT NULL,
  subject TEXT NOT NULL,
  used BIGINT NOT NULL,
  PRIMARY KEY (day, scope, subject)
);
