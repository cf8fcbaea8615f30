-- Namespace registry (SPEC 5.1): one row per tenant, the migration
-- bookkeeping, and helpers that reach a namespace's schema by name so the
-- server can list, inspect and drop namespaces with one shared statement.

CREATE SCHEMA IF NOT EXISTS eventodb_store;

-- Kept in our own schema (the reference uses public) so the registry is
-- self-contained; the server also creates it before reading it.
CREATE TABLE IF NOT EXISTS eventodb_store.schema_migrations (
	version TEXT PRIMARY KEY,
	applied_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS eventodb_store.namespaces (
	id TEXT PRIMARY KEY,
	token_hash TEXT NOT NULL UNIQUE,
	schema_name TEXT NOT NULL UNIQUE,
	description TEXT,
	created_at BIGINT NOT NULL,
	metadata JSONB DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS idx_namespaces_token_hash ON eventodb_store.namespaces (token_hash);

-- Real message count of one namespace (ns.list). A schema that has vanished
-- counts 0 so one broken namespace cannot break the whole listing.
CREATE OR REPLACE FUNCTION eventodb_store.message_count(schema text)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %I.messages', schema) INTO n;
	RETURN n;
EXCEPTION
	WHEN invalid_schema_name OR undefined_table THEN
		RETURN 0;
END;
$$;

-- ns.info figures in one scan: messages, distinct streams, and the newest
-- message time as epoch microseconds (NULL when there are no messages).
CREATE OR REPLACE FUNCTION eventodb_store.namespace_stats(schema text,
	OUT message_count bigint, OUT stream_count bigint, OUT last_activity_us bigint)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	EXECUTE format('SELECT count(*), count(DISTINCT stream_name), '
		'(extract(epoch FROM max("time")) * 1000000)::bigint FROM %I.messages', schema)
		INTO message_count, stream_count, last_activity_us;
EXCEPTION
	WHEN invalid_schema_name OR undefined_table THEN
		message_count := 0;
		stream_count := 0;
		last_activity_us := NULL;
END;
$$;

-- ns.delete in one statement (so one implicit transaction): removes the
-- registry row, counts the messages under an exclusive lock (no write can
-- commit between the count and the drop), drops the schema. Returns the
-- number of messages deleted, or NULL when the namespace does not exist.
CREATE OR REPLACE FUNCTION eventodb_store.drop_namespace(ns_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	s text;
	n bigint := 0;
BEGIN
	DELETE FROM eventodb_store.namespaces WHERE id = ns_id RETURNING schema_name INTO s;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	IF to_regclass(format('%I.messages', s)) IS NOT NULL THEN
		EXECUTE format('LOCK TABLE %I.messages IN ACCESS EXCLUSIVE MODE', s);
		EXECUTE format('SELECT count(*) FROM %I.messages', s) INTO n;
	END IF;
	EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s);
	RETURN n;
END;
$$;
