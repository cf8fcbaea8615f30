-- EventoDB's writer. Same category lock as acquire_lock (so it serializes
-- with Message DB's write_message), but a version mismatch is an answer, not
-- an exception: one row (NULL, NULL, actual version). Otherwise the message
-- goes in at actual+1 and the row is (position, global_position, actual).
-- One round trip, no error path, and the conflict reports the version seen
-- under the lock (SPEC D19).

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
	write_message_ex."position" := _v + 1;
	write_message_ex.global_position := _gp;
	write_message_ex.actual := _v;
	RETURN NEXT;
END;
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (3) ON CONFLICT DO NOTHING;
