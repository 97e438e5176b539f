-- Operator controls: listing suspensions (who, why, when, and what lifted them), routing decisions
-- sampled by the data plane for the operator's activity view, and the index the flagged-trades list
-- reads. Identical on SQLite and PostgreSQL.

-- One row per suspension. `lifted_at` is NULL while it holds; at most one open suspension per listing.
-- `previous_status` is the listing status to go back to when it is lifted (a paused listing stays paused).
CREATE TABLE listing_suspensions (
  id TEXT PRIMARY KEY,
  listing_id TEXT NOT NULL REFERENCES listings(id),
  reason TEXT,
  suspended_by TEXT NOT NULL,
  suspended_at BIGINT NOT NULL,
  previous_status TEXT NOT NULL,
  lifted_at BIGINT,
  lifted_by TEXT,
  lift_probe_run_id TEXT
);
CREATE UNIQUE INDEX listing_suspensions_open ON listing_suspensions(listing_id) WHERE lifted_at IS NULL;
CREATE INDEX listing_suspensions_listing ON listing_suspensions(listing_id, suspended_at);

-- Sampled routing decisions (at most one per model and profile per second per data-plane instance),
-- pruned to the newest rows by the writer. `explanation` is JSON text: the profile's weights, how many
-- listings the model had, and the native Market.explain rows (ranked first, at most a few dozen).
CREATE TABLE routing_decisions (
  id TEXT PRIMARY KEY,
  at BIGINT NOT NULL,
  instance TEXT NOT NULL,
  model TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  strategy TEXT NOT NULL,
  seed BIGINT NOT NULL,
  trade_id TEXT,
  chosen_listing_id TEXT,
  outcome TEXT NOT NULL,
  error_code TEXT,
  explanation TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX routing_decisions_model ON routing_decisions(model, profile_id, id);

-- Trades whose seller-reported usage exceeds the local count, newest first (ids are time-ordered).
CREATE INDEX trades_flagged ON trades(id) WHERE usage_audit = 'flagged';
