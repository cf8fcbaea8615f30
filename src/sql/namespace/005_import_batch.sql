-- One POST /import batch. The records carry their own global positions,
-- while a write draws its position from the sequence inside its INSERT: a
-- write running while a batch was being inserted could draw a position the
-- batch holds, and fail with a duplicate key when the batch committed first.
-- So the batch first takes SHARE ROW EXCLUSIVE on the table, which conflicts
-- with the ROW EXCLUSIVE lock that every INSERT holds until its transaction
-- ends (and with itself): the batch waits for the writes in flight, writes
-- that arrive meanwhile wait for the batch, and no write can hold or draw a
-- position between the batch's insert and the sequence move. Readers are not
-- blocked. Then it inserts (one statement: all or nothing) and moves the
-- sequence up to the batch's highest position, never down (is_called false:
-- last_value is the next value itself).
--
-- The lock is taken in a function because a statement that contains the
-- INSERT itself takes ROW EXCLUSIVE before anything in it runs; two such
-- imports would then each wait for the other's lock.
-- records: a JSON array of {i,s,t,p,g,d,m,u} (u: microseconds since the epoch).

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.import_batch(records json)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	_mx bigint;
	_next bigint;
BEGIN
	LOCK TABLE {{SCHEMA_NAME}}.messages IN SHARE ROW EXCLUSIVE MODE;
	WITH ins AS (
		INSERT INTO {{SCHEMA_NAME}}.messages
			(id, stream_name, type, "position", global_position, data, metadata, "time")
		SELECT x.i, x.s, x.t, x.p, x.g, x.d, x.m, timestamp 'epoch' + x.u * interval '1 microsecond'
		FROM json_to_recordset(records) AS x(i uuid, s text, t text, p int8, g int8, d jsonb, m jsonb, u int8)
		RETURNING global_position)
	SELECT max(global_position) INTO _mx FROM ins;
	SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO _next
	FROM {{SCHEMA_NAME}}.messages_global_position_seq;
	IF _mx >= _next THEN
		PERFORM setval('{{SCHEMA_NAME}}.messages_global_position_seq', _mx, true);
	END IF;
	RETURN _mx;
END;
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (5) ON CONFLICT DO NOTHING;
