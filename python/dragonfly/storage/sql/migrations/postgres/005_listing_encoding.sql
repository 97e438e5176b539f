-- The tokenizer a listing declares for local usage counting (o200k_base | cl100k_base); NULL = derive
-- it from the upstream model name (and say the count is estimated when unknown).
ALTER TABLE listings ADD COLUMN encoding TEXT;
