-- Trade reviews and seller payouts (domain/reviews.py, domain/payouts.py; docs/seller.md "Trade reviews",
-- "Payouts"; docs/operator.md "Resolving trade reviews"). Identical on SQLite and PostgreSQL: keep it in
-- step with the other dialect's 013_reviews_payouts.sql.

-- The prices a trade was billed at, micro-USD per 1M units (tokens; the input price is per character for
-- a `character` trade), so an upheld review can price the trade's excess exactly. NULL for trades
-- settled before this migration: a review of one uses its listing's current prices.
ALTER TABLE trades ADD COLUMN input_price BIGINT;
ALTER TABLE trades ADD COLUMN output_price BIGINT;
ALTER TABLE trades ADD COLUMN cached_input_price BIGINT;

-- One seller's flagged trades (the review queue and the earnings held under review).
CREATE INDEX trades_flagged_seller ON trades(seller_account_id, id) WHERE usage_audit = 'flagged';

-- One row per resolved review; a flagged trade without a row is an open review (its seller's share is
-- held). `excess_micros` is what the review rule found billed above the honest amount when it was
-- resolved; `refund_micros` what went back to the buyer (the excess when upheld, 0 when dismissed), in the
-- `review_refund` journal whose ref is the trade id.
CREATE TABLE trade_reviews (
  trade_id TEXT PRIMARY KEY REFERENCES trades(id),
  seller_account_id TEXT NOT NULL,
  buyer_account_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('upheld', 'dismissed')),
  excess_micros BIGINT NOT NULL CHECK (excess_micros >= 0),
  refund_micros BIGINT NOT NULL CHECK (refund_micros >= 0),
  note TEXT,
  resolved_by TEXT NOT NULL,
  resolved_at BIGINT NOT NULL
);
CREATE INDEX trade_reviews_seller ON trade_reviews(seller_account_id, state, resolved_at);

-- Seller payouts: requested by the seller (available -> payouts pending, journal `payout_request`), then
-- marked paid by the operator once the money left (payouts pending -> external:payouts, journal
-- `payout_paid`). Both journals' ref is the payout id.
CREATE TABLE payouts (
  id TEXT PRIMARY KEY,
  seller_account_id TEXT NOT NULL,
  amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
  status TEXT NOT NULL CHECK (status IN ('pending', 'paid')),
  created_at BIGINT NOT NULL,
  paid_at BIGINT,
  paid_by TEXT,
  note TEXT
);
CREATE INDEX payouts_seller ON payouts(seller_account_id, id);
CREATE INDEX payouts_status ON payouts(status, id);
