-- Market pricing (domain/pricing.py, services/pricing.py, docs/seller.md "Pricing"): reference prices,
-- the re-price worker's claim, multiplier listings without a reference, and each listing's price
-- history. Identical on SQLite and PostgreSQL: keep it in step with the other dialect's 011_pricing.sql.

-- The reference price of a model (and kind), micro-USD per 1M tokens. `market_*`: the median of the
-- model's active fixed-price listings (neither multiplier nor auto-follow), kept by the pricing worker
-- (NULL: none to take it from).
-- `override_*`: the operator's (`PUT /api/admin/reference-prices/:model`; NULL: follow the market).
-- A multiplier listing is priced from the override when set, else from the market price.
CREATE TABLE reference_prices (
  model TEXT NOT NULL,
  kind TEXT NOT NULL,
  market_input_price BIGINT CHECK (market_input_price IS NULL OR market_input_price >= 0),
  market_output_price BIGINT CHECK (market_output_price IS NULL OR market_output_price >= 0),
  market_cached_input_price BIGINT,
  market_listings INTEGER NOT NULL DEFAULT 0,
  market_at BIGINT,
  override_input_price BIGINT CHECK (override_input_price IS NULL OR override_input_price >= 0),
  override_output_price BIGINT CHECK (override_output_price IS NULL OR override_output_price >= 0),
  override_cached_input_price BIGINT,
  override_by TEXT,
  override_at BIGINT,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (model, kind)
);

-- 1 while a multiplier listing has no reference price to be priced from: the data plane does not route
-- it (its listing view says `pricing.reference_missing: true`).
ALTER TABLE listings ADD COLUMN reference_missing INTEGER NOT NULL DEFAULT 0;

-- Every price a listing has had: set by its seller (`seller`), derived from the reference
-- (`multiplier`) or moved by auto-follow (`auto_follow`), with what it moved from and why. `n` numbers a
-- listing's entries 1, 2, ... (several can share a millisecond; the writes that add them update the
-- listing row first, so they are serialised per listing).
CREATE TABLE listing_price_history (
  id TEXT PRIMARY KEY,
  listing_id TEXT NOT NULL REFERENCES listings(id),
  n INTEGER NOT NULL,
  at BIGINT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('seller', 'multiplier', 'auto_follow')),
  input_price BIGINT NOT NULL,
  output_price BIGINT NOT NULL,
  cached_input_price BIGINT,
  previous_input_price BIGINT,
  previous_output_price BIGINT,
  detail TEXT
);
CREATE UNIQUE INDEX listing_price_history_listing ON listing_price_history(listing_id, n);

-- The pricing worker's claim: one row; a pass runs only on the control plane that moves `next_run_at`
-- past now (a conditional UPDATE), so several control planes re-price once per period between them.
CREATE TABLE pricing_runs (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  next_run_at BIGINT NOT NULL,
  run_by TEXT,
  last_run_at BIGINT
);
INSERT INTO pricing_runs (id, next_run_at) VALUES (1, 0);
