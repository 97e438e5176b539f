-- Each key's settled spend per UTC month (YYYY-MM), maintained by the settlement batch in the same
-- transaction as the trades, so re-seeding the state store reads one row per key instead of summing
-- the month's trades.
CREATE TABLE key_spend (
  key_id TEXT NOT NULL,
  month TEXT NOT NULL,
  spent_micros BIGINT NOT NULL,
  PRIMARY KEY (key_id, month)
);
INSERT INTO key_spend (key_id, month, spent_micros)
SELECT key_id, strftime('%Y-%m', created_at / 1000, 'unixepoch'), SUM(cost_micros)
FROM trades WHERE cost_micros > 0
GROUP BY key_id, strftime('%Y-%m', created_at / 1000, 'unixepoch');
