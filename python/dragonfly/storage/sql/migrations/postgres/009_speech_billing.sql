-- Speech billing (docs/seller.md, "Speech listings"). Identical on SQLite and PostgreSQL: keep
-- it in step with the other dialect's 009_speech_billing.sql.

-- What a listing's input price is per: `token` (USD per 1M input tokens, every kind) or `character`
-- (USD per 1M input characters, speech listings only; the API refuses it for other kinds).
ALTER TABLE listings ADD COLUMN price_unit TEXT NOT NULL DEFAULT 'token'
  CHECK (price_unit IN ('token', 'character'));

-- On the trade, as it was priced: the listing's unit at the time (NULL when no listing answered, and for
-- trades settled before this migration, which were all per token), and the request's input characters
-- (speech only; what a `character` trade is billed on).
ALTER TABLE trades ADD COLUMN price_unit TEXT;
ALTER TABLE trades ADD COLUMN characters_prompt BIGINT;
