-- Control plane additions: admission probe runs, and at most one live default routing profile per account.

CREATE TABLE probe_runs (
  id TEXT PRIMARY KEY,
  listing_id TEXT NOT NULL REFERENCES listings(id),
  contract_id TEXT NOT NULL REFERENCES contracts(id),
  passed INTEGER NOT NULL,
  ttft_ms INTEGER,
  latency_ms INTEGER,
  checks TEXT NOT NULL DEFAULT '[]',
  started_at BIGINT NOT NULL,
  finished_at BIGINT NOT NULL
);
CREATE INDEX probe_runs_listing ON probe_runs(listing_id, started_at);

CREATE UNIQUE INDEX routing_profiles_one_default ON routing_profiles(account_id)
  WHERE is_default = 1 AND deleted_at IS NULL;
CREATE INDEX email_tokens_account ON email_tokens(account_id);
