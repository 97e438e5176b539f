-- Listing health (domain/health.py, services/health.py): what outlier ejection needs to remember across
-- instances and restarts. The health state itself is the contract's status (active, degraded,
-- suspended); an operator suspension is told apart by the listing's own status `suspended` and its open
-- listing_suspensions row. Identical on SQLite and PostgreSQL.

-- One row per listing that health has ever moved. `ejections` counts its health suspensions (the next
-- one lasts base x ejections, capped), `last_ejected_at` is when the latest began, `reprobe_at` when the
-- background re-probe is due (NULL: none). `lease_until`/`lease_by`: the control plane that claimed the
-- due re-probe (a claimed row, so exactly one instance probes a listing at a time; a lease outlives a
-- probe and lapses if that instance dies).
CREATE TABLE listing_health (
  listing_id TEXT PRIMARY KEY REFERENCES listings(id),
  ejections INTEGER NOT NULL DEFAULT 0,
  last_ejected_at BIGINT,
  reprobe_at BIGINT,
  lease_until BIGINT,
  lease_by TEXT,
  updated_at BIGINT NOT NULL
);
CREATE INDEX listing_health_reprobe ON listing_health(reprobe_at) WHERE reprobe_at IS NOT NULL;
