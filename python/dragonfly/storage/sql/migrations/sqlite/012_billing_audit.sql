-- Billing against Dragonfly's own counts (domain/billing.py; docs/buyer.md "Billing rules"). Identical on
-- SQLite and PostgreSQL: keep it in step with the other dialect's 012_billing_audit.sql.

-- Dragonfly's count of the prompt with the listing's tokenizer, beside what the seller reported
-- (`native_tokens_prompt`) and what was billed (`tokens_prompt`); the completion's count is
-- `counted_tokens_completion` (001). NULL for trades settled before this migration.
ALTER TABLE trades ADD COLUMN counted_tokens_prompt BIGINT;
