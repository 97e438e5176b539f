-- Seller earnings release (locked -> available) history, and the indexes the earnings, usage and
-- ledger-check reports need at millions of trades. Identical on SQLite and PostgreSQL.

-- One row per release journal (kind `earnings_release`, ref `<seller>:<period_end>`): the locked
-- earnings credited before `period_end` that had not been released yet.
CREATE TABLE seller_settlements (
  id TEXT PRIMARY KEY,
  seller_account_id TEXT NOT NULL,
  amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
  trades_count BIGINT NOT NULL CHECK (trades_count >= 0),
  period_start BIGINT NOT NULL,
  period_end BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  ref TEXT NOT NULL UNIQUE,
  UNIQUE (seller_account_id, period_end)
);

-- Earnings summaries per listing over time.
CREATE INDEX trades_listing_time ON trades(listing_id, created_at);
-- Matured locked credits per seller account (covering: the release worker sums amount by time).
CREATE INDEX entries_account_time ON entries(account, created_at, amount);
