-- Cross-host delivery (see src/notify_pg.c). The servers whose listener is
-- up, with a heartbeat: a write notifies only while another server listens,
-- so a single server pays nothing for NOTIFY (PostgreSQL serializes the
-- commits of notifying transactions).
CREATE TABLE IF NOT EXISTS eventodb_store.listeners (
	host TEXT PRIMARY KEY,
	seen TIMESTAMPTZ NOT NULL
);

-- Cross-host namespace changes: creating or deleting a namespace notifies
-- the other eventodb servers on this database (channel 'eventodb', as the
-- writes of namespace migration 004), so a new namespace authenticates
-- everywhere and a deleted one stops everywhere; a re-created one gets a
-- new generation, so no server keeps cached stream versions of the old one.
-- Payloads: n <host> I <id> <token_hash>   and   n <host> D <id>
-- (<host> is '-' for sessions without eventodb.host).

CREATE OR REPLACE FUNCTION eventodb_store.namespace_notify()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	_host text := coalesce(nullif(current_setting('eventodb.host', true), ''), '-');
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM pg_notify('eventodb', 'n ' || _host || ' D ' || OLD.id);
	ELSE
		PERFORM pg_notify('eventodb', 'n ' || _host || ' I ' || NEW.id || ' ' || NEW.token_hash);
	END IF;
	RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS namespace_notify ON eventodb_store.namespaces;
CREATE TRIGGER namespace_notify AFTER INSERT OR UPDATE OR DELETE ON eventodb_store.namespaces
	FOR EACH ROW EXECUTE FUNCTION eventodb_store.namespace_notify();
