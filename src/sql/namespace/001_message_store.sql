-- Message DB compatible storage for one namespace. {{SCHEMA_NAME}} is the
-- double-quoted schema ("eventodb_<id>"). Every statement is IF NOT EXISTS,
-- OR REPLACE or ON CONFLICT DO NOTHING, so re-applying it is harmless.
-- The small helpers are LANGUAGE sql so the planner inlines them (the
-- consumer-group filter calls them once per row).

CREATE SCHEMA IF NOT EXISTS {{SCHEMA_NAME}};

CREATE TABLE IF NOT EXISTS {{SCHEMA_NAME}}.messages (
	id UUID NOT NULL DEFAULT gen_random_uuid(),
	stream_name VARCHAR NOT NULL,
	type VARCHAR NOT NULL,
	"position" BIGINT NOT NULL,
	global_position BIGSERIAL NOT NULL,
	data JSONB,
	metadata JSONB,
	"time" TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
	PRIMARY KEY (global_position)
);

CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON {{SCHEMA_NAME}}.messages (id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_stream ON {{SCHEMA_NAME}}.messages (stream_name, "position");
CREATE INDEX IF NOT EXISTS messages_category ON {{SCHEMA_NAME}}.messages (
	(split_part(stream_name, '-', 1)),
	global_position,
	(metadata->>'correlationStreamName')
);

CREATE TABLE IF NOT EXISTS {{SCHEMA_NAME}}._schema_version (
	version INTEGER PRIMARY KEY,
	applied_at TIMESTAMP DEFAULT now()
);

-- First 8 bytes of md5(value), big-endian, as a signed bigint; NULL for NULL.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.hash_64(value varchar)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ('x' || left(md5($1), 16))::bit(64)::bigint $$;

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.category(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT split_part($1, '-', 1)::varchar $$;

-- Text after the first '-', NULL when there is none.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN strpos($1, '-') = 0 THEN NULL
	       ELSE substring($1 FROM strpos($1, '-') + 1) END::varchar
$$;

-- The id up to its first '+' (account-123+retry -> 123), NULL without an id.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.cardinal_id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT split_part({{SCHEMA_NAME}}.id($1), '+', 1)::varchar $$;

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.is_category(stream_name varchar)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT strpos($1, '-') = 0 $$;

-- Writers to one category are serialized by this transaction-scoped lock.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.acquire_lock(stream_name varchar)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	_category_name_hash bigint;
BEGIN
	_category_name_hash := {{SCHEMA_NAME}}.hash_64({{SCHEMA_NAME}}.category(acquire_lock.stream_name));
	PERFORM pg_advisory_xact_lock(_category_name_hash);
	RETURN _category_name_hash;
END;
$$;

-- -1 for an empty or unknown stream.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.stream_version(stream_name varchar)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
	SELECT coalesce(max(m."position"), -1)
	FROM {{SCHEMA_NAME}}.messages m
	WHERE m.stream_name = $1
$$;

-- Message DB's writer: a version mismatch raises "Wrong expected version".
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.write_message(
	id varchar,
	stream_name varchar,
	"type" varchar,
	data jsonb,
	metadata jsonb DEFAULT NULL,
	expected_version bigint DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	_stream_version bigint;
	_next_position bigint;
BEGIN
	PERFORM {{SCHEMA_NAME}}.acquire_lock(write_message.stream_name);
	_stream_version := {{SCHEMA_NAME}}.stream_version(write_message.stream_name);
	IF write_message.expected_version IS NOT NULL
	   AND write_message.expected_version <> _stream_version THEN
		RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
			write_message.expected_version, write_message.stream_name, _stream_version
			USING ERRCODE = 'P0003';
	END IF;
	_next_position := _stream_version + 1;
	INSERT INTO {{SCHEMA_NAME}}.messages (id, stream_name, "position", type, data, metadata)
	VALUES (write_message.id::uuid, write_message.stream_name, _next_position,
	        write_message."type", write_message.data, write_message.metadata);
	RETURN _next_position;
END;
$$;

-- batch_size -1 means no limit; condition is accepted and ignored.
CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.get_stream_messages(
	stream_name varchar,
	"position" bigint DEFAULT 0,
	batch_size bigint DEFAULT 1000,
	condition varchar DEFAULT NULL
)
RETURNS SETOF {{SCHEMA_NAME}}.messages
LANGUAGE sql STABLE
AS $$
	SELECT m.*
	FROM {{SCHEMA_NAME}}.messages m
	WHERE m.stream_name = $1
	  AND m."position" >= $2
	ORDER BY m."position"
	LIMIT CASE WHEN $3 = -1 THEN NULL ELSE $3 END
$$;

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.get_last_stream_message(
	stream_name varchar,
	"type" varchar DEFAULT NULL
)
RETURNS SETOF {{SCHEMA_NAME}}.messages
LANGUAGE sql STABLE
AS $$
	SELECT m.*
	FROM {{SCHEMA_NAME}}.messages m
	WHERE m.stream_name = $1
	  AND ($2 IS NULL OR m.type = $2)
	ORDER BY m."position" DESC
	LIMIT 1
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
