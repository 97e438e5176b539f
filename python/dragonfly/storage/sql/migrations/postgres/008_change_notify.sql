-- Every bump of the change sequence is announced on the channel `dragonfly_changes` (delivered at
-- commit), so data-plane instances LISTENing reload their snapshot at once instead of at the next poll.
CREATE OR REPLACE FUNCTION dragonfly_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('dragonfly_changes', NEW.seq::text); RETURN NEW; END $$;
CREATE TRIGGER change_seq_notify AFTER UPDATE ON change_seq FOR EACH ROW EXECUTE FUNCTION dragonfly_notify_change();
