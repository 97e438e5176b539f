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

-- Lines are append-only (001): lift the guard for this one backfill, then put it back as it was.
DROP TRIGGER entries_no_update;
UPDATE entries SET public_id = printf('%08x-%04x-8000-8000-%012x', created_at >> 16, created_at & 65535, id);
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;

-- SQLite cannot add NOT NULL to an existing column; a line without its UUID is refused instead.
CREATE TRIGGER entries_public_id_required BEFORE INSERT ON entries WHEN NEW.public_id IS NULL
BEGIN SELECT RAISE(ABORT, 'entries.public_id is required'); END;
