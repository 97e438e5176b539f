-- Dragonfly schema v1 (PostgreSQL). Keep in step with sqlite/001_init.sql: the only differences are
-- the auto-increment column type and BLOB/BYTEA.
-- Money: integer micro-USD (1e-6 USD). Prices: integer micro-USD per 1M tokens. Time: epoch ms.

CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  email_verified INTEGER NOT NULL DEFAULT 0,
  roles TEXT NOT NULL DEFAULT '[]',
  trial_granted INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
);

CREATE TABLE email_tokens (
  token_hash TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  purpose TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT
);

CREATE TABLE routing_profiles (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  name TEXT NOT NULL,
  strategy TEXT NOT NULL,
  config TEXT NOT NULL DEFAULT '{}',
  is_default INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  deleted_at BIGINT
);
CREATE INDEX routing_profiles_account ON routing_profiles(account_id);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  kind TEXT NOT NULL CHECK (kind IN ('buyer', 'management')),
  name TEXT,
  key_group TEXT NOT NULL DEFAULT 'default',
  key_hash TEXT NOT NULL UNIQUE,
  key_hint TEXT NOT NULL,
  mgmt_scope TEXT CHECK (mgmt_scope IS NULL OR mgmt_scope IN ('buyer', 'seller', 'full')),
  monthly_budget_cents BIGINT CHECK (monthly_budget_cents IS NULL OR monthly_budget_cents >= 0),
  routing_profile_id TEXT REFERENCES routing_profiles(id),
  ip_whitelist TEXT NOT NULL DEFAULT '[]',
  ip_blacklist TEXT NOT NULL DEFAULT '[]',
  expires_at BIGINT,
  revoked_at BIGINT,
  created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_id, kind);

CREATE TABLE pool_keys (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  provider TEXT NOT NULL,
  base_url TEXT NOT NULL,
  name TEXT,
  key_ciphertext TEXT NOT NULL,
  key_hint TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  created_at BIGINT NOT NULL,
  deleted_at BIGINT
);
CREATE INDEX pool_keys_account ON pool_keys(account_id);

CREATE TABLE listings (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  pool_key_id TEXT NOT NULL REFERENCES pool_keys(id),
  model TEXT NOT NULL,
  upstream_model TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'chat',
  input_price BIGINT NOT NULL CHECK (input_price >= 0),
  output_price BIGINT NOT NULL CHECK (output_price >= 0),
  cached_input_price BIGINT,
  price_multiplier TEXT,
  payout_floor BIGINT,
  rpm_cap INTEGER,
  concurrency_cap INTEGER,
  auto_follow TEXT,
  context_length INTEGER,
  status TEXT NOT NULL,
  contract_status TEXT NOT NULL,
  confirmed_input_price BIGINT NOT NULL,
  confirmed_output_price BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  deleted_at BIGINT
);
CREATE INDEX listings_model ON listings(model, status);
CREATE INDEX listings_account ON listings(account_id);

CREATE TABLE contracts (
  id TEXT PRIMARY KEY,
  listing_id TEXT NOT NULL REFERENCES listings(id),
  status TEXT NOT NULL,
  terms TEXT NOT NULL,
  since BIGINT NOT NULL,
  reason TEXT
);
CREATE INDEX contracts_listing ON contracts(listing_id);

CREATE TABLE contract_checks (
  id TEXT PRIMARY KEY,
  contract_id TEXT NOT NULL REFERENCES contracts(id),
  kind TEXT NOT NULL,
  passed INTEGER NOT NULL,
  detail TEXT,
  at BIGINT NOT NULL
);
CREATE INDEX contract_checks_contract ON contract_checks(contract_id, at);

-- One row per request id (the trade id = x-request-id). Written once, at settlement.
CREATE TABLE trades (
  id TEXT PRIMARY KEY,
  buyer_account_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  upstream_model TEXT,
  listing_id TEXT,
  seller_account_id TEXT,
  provider TEXT,
  streamed INTEGER NOT NULL,
  status TEXT NOT NULL,
  finish_reason TEXT,
  error_code TEXT,
  latency_ms INTEGER,
  ttft_ms INTEGER,
  tokens_prompt BIGINT NOT NULL DEFAULT 0,
  tokens_completion BIGINT NOT NULL DEFAULT 0,
  tokens_cached BIGINT NOT NULL DEFAULT 0,
  native_tokens_prompt BIGINT,
  native_tokens_completion BIGINT,
  counted_tokens_completion BIGINT,
  usage_audit TEXT NOT NULL DEFAULT 'unverifiable',
  hold_micros BIGINT NOT NULL DEFAULT 0,
  cost_micros BIGINT NOT NULL DEFAULT 0 CHECK (cost_micros <= hold_micros OR hold_micros = 0),
  seller_payout_micros BIGINT NOT NULL DEFAULT 0,
  platform_fee_micros BIGINT NOT NULL DEFAULT 0,
  attempts TEXT NOT NULL DEFAULT '[]',
  created_at BIGINT NOT NULL,
  settled_at BIGINT
);
CREATE INDEX trades_buyer_time ON trades(buyer_account_id, created_at);
CREATE INDEX trades_key_time ON trades(key_id, created_at);
CREATE INDEX trades_seller_time ON trades(seller_account_id, created_at);

-- Double-entry journal: every journal's entries sum to zero; entries are never updated or deleted.
CREATE TABLE journals (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL,
  memo TEXT,
  created_at BIGINT NOT NULL,
  UNIQUE (kind, ref)
);

CREATE TABLE entries (
  id BIGSERIAL PRIMARY KEY,
  journal_id TEXT NOT NULL REFERENCES journals(id),
  account TEXT NOT NULL,
  amount BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX entries_account ON entries(account, id);
CREATE INDEX entries_journal ON entries(journal_id);

CREATE FUNCTION entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'journal entries are append-only'; END $$;
CREATE TRIGGER entries_no_update BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION entries_append_only();

-- Stored balance per ledger account; always equal to the sum of that account's entries.
CREATE TABLE balances (
  account TEXT PRIMARY KEY,
  amount BIGINT NOT NULL
);

-- Monotonic change counter: every write that affects an in-memory snapshot (keys, profiles,
-- listings, pool keys) bumps it; data-plane instances poll it and reload.
CREATE TABLE change_seq (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);

CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
