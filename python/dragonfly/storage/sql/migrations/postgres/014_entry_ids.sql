-- Every journal line gets a UUID of its own, `entries.public_id`: the `id` that
-- `GET /api/billing/transactions` shows (API.md: all ids are UUID strings). The integer `entries.id` stays
-- the primary key, the line order and the page cursor. Keep in step with the other dialect's
-- 014_entry_ids.sql.
--
-- New lines get a UUIDv7 made by the writer (ids.py `new_id`, like every other id). Lines written before
-- this migration get a deterministic one, the same on both dialects and at every run: a UUIDv8
-- (RFC 9562, custom) laid out like a v7 — the line's epoch milliseconds in the first 48 bits — with the
-- line's integer id in the last 48 bits, so it is unique and never changes:
--   <created_at, 12 hex digits as 8-4>-8000-8000-<entries.id, 12 hex digits>
ALTER TABLE entries ADD COLUMN public_id TEXT;

-- Lines are append-only (001): lift the guard for this one backfill (in this migration's transaction),
-- then put it back.
ALTER TABLE entries DISABLE TRIGGER entries_no_update;
UPDATE entries SET public_id = lpad(to_hex(created_at >> 16), 8, '0') || '-' || lpad(to_hex(created_at & 65535), 4, '0') || '-8000-8000-' || lpad(to_hex(id), 12, '0');
ALTER TABLE entries ENABLE TRIGGER entries_no_update;

-- The default only serves a writer of an earlier version still running during a rolling upgrade (it
-- names no public_id): its lines get a random UUIDv4 instead of failing. This version always names one.
ALTER TABLE entries ALTER COLUMN public_id SET DEFAULT gen_random_uuid()::text;
ALTER TABLE entries ALTER COLUMN public_id SET NOT NULL;
