-- The market-relative usage audit, live (domain/usage_audit.py, workers/usage_audit.py; docs/operator.md
-- "Market-relative usage audit"). Identical on SQLite and PostgreSQL: keep it in step with the other
-- dialect's 015_usage_alarms.sql.

-- The worker reads trades in the order they ended.
CREATE INDEX trades_settled ON trades(settled_at);

-- One control plane at a time runs a named background worker that keeps state in memory: it holds the
-- lease while `until` (ms) is ahead; another takes over once it has lapsed.
CREATE TABLE worker_leases (
  name TEXT PRIMARY KEY,
  owner TEXT,
  until BIGINT NOT NULL
);
INSERT INTO worker_leases (name, until) VALUES ('usage_audit', 0);

-- One row per alarm of the detector: a seller's reported / counted ratio of one token kind drifted above
-- the market's for the model. The block of trades that crossed the threshold is flagged (trades.usage_audit
-- = 'flagged', audit_alarm_id = the alarm): each is a trade review, its seller's share held until resolved.
CREATE TABLE usage_alarms (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  seller_account_id TEXT NOT NULL,
  model TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('prompt', 'completion')),
  statistic DOUBLE PRECISION NOT NULL,
  ratio DOUBLE PRECISION NOT NULL,
  reference DOUBLE PRECISION NOT NULL,
  trades BIGINT NOT NULL,
  flagged BIGINT NOT NULL
);
CREATE INDEX usage_alarms_seller ON usage_alarms(seller_account_id, created_at);

ALTER TABLE trades ADD COLUMN audit_alarm_id TEXT;
