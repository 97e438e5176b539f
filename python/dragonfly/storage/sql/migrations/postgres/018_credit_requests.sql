-- Operator credits made with an `Idempotency-Key` (services/credits.py; docs/operator.md
-- "POST /api/admin/credits"). Identical on SQLite and PostgreSQL: keep it in step with the other
-- dialect's 018_credit_requests.sql.

-- One row per (operator, key), inserted first in the credit's own transaction: a retry of the same
-- request, concurrent or later, finds it and is answered with the first credit instead of posting another.
-- `balance_micros` is the buyer's cash balance right after that credit (what its answer showed).
CREATE TABLE credit_requests (
  operator_id TEXT NOT NULL REFERENCES accounts(id),
  idempotency_key TEXT NOT NULL,
  credit_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micros BIGINT NOT NULL,
  note TEXT NOT NULL,
  balance_micros BIGINT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (operator_id, idempotency_key)
);
