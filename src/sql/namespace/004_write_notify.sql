-- Cross-host delivery: write_message_ex also notifies the write, inside the
-- write's transaction, so other eventodb servers on this database learn of
-- committed writes only, in commit order. The session's eventodb.host GUC
-- (set by the server through PGOPTIONS) is both the switch and the sender:
-- sessions without it (other tools, --pg-notify=false) do not notify, and
-- a server ignores notifications carrying its own host id. Nothing is sent
-- while no other server listens (eventodb_store.listeners, heartbeats every
-- 10 s), because notifying transactions commit one at a time.
-- Payload: w <host> <schema> <position> <global_position> <stream_name>
-- (the stream name last: it may contain spaces). NOTIFY payloads must stay
-- under 8000 bytes; a longer name (never written through the API) sends
-- 'r <host>', which makes listeners resync from the database instead.

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.write_message_ex(
	id varchar,
	stream_name varchar,
	"type" varchar,
	data jsonb,
	metadata jsonb,
	expected_version bigint
)
RETURNS TABLE ("position" bigint, global_position bigint, actual bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	_v bigint;
	_gp bigint;
	_host text;
BEGIN
	PERFORM {{SCHEMA_NAME}}.acquire_lock(write_message_ex.stream_name);
	SELECT coalesce(max(m."position"), -1) INTO _v
	FROM {{SCHEMA_NAME}}.messages m
	WHERE m.stream_name = write_message_ex.stream_name;
	IF write_message_ex.expected_version IS NOT NULL
	   AND write_message_ex.expected_version <> _v THEN
		write_message_ex."position" := NULL;
		write_message_ex.global_position := NULL;
		write_message_ex.actual := _v;
		RETURN NEXT;
		RETURN;
	END IF;
	INSERT INTO {{SCHEMA_NAME}}.messages AS m (id, stream_name, "position", type, data, metadata)
	VALUES (write_message_ex.id::uuid, write_message_ex.stream_name, _v + 1,
	        write_message_ex."type", write_message_ex.data, write_message_ex.metadata)
	RETURNING m.global_position INTO _gp;
	_host := current_setting('eventodb.host', true);
	IF _host IS NOT NULL AND _host <> '' AND EXISTS (
		SELECT 1 FROM eventodb_store.listeners l
		WHERE l.host <> _host AND l.seen > now() - interval '30 seconds') THEN
		IF octet_length(write_message_ex.stream_name) <= 7000 THEN
			PERFORM pg_notify('eventodb', 'w ' || _host || ' {{SCHEMA_NAME}} ' || (_v + 1)::text || ' '
			                  || _gp::text || ' ' || write_message_ex.stream_name);
		ELSE
			PERFORM pg_notify('eventodb', 'r ' || _host);
		END IF;
	END IF;
	write_message_ex."position" := _v + 1;
	write_message_ex.global_position := _gp;
	write_message_ex.actual := _v;
	RETURN NEXT;
END;
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (4) ON CONFLICT DO NOTHING;
