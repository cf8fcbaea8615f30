-- Message DB's category reader with the 002 semantics: an empty (or NULL)
-- category reads every message of the namespace. batch_size -1 means no
-- limit; condition is accepted and ignored. Streams without an id belong to
-- no consumer-group member (their cardinal id, hence hash, is NULL).

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.get_category_messages(
	category varchar,
	"position" bigint DEFAULT 1,
	batch_size bigint DEFAULT 1000,
	correlation varchar DEFAULT NULL,
	consumer_group_member bigint DEFAULT NULL,
	consumer_group_size bigint DEFAULT NULL,
	condition varchar DEFAULT NULL
)
RETURNS SETOF {{SCHEMA_NAME}}.messages
LANGUAGE sql STABLE
AS $$
	SELECT m.*
	FROM {{SCHEMA_NAME}}.messages m
	WHERE ($1 IS NULL OR $1 = '' OR split_part(m.stream_name, '-', 1) = $1)
	  AND m.global_position >= $2
	  AND ($4 IS NULL OR split_part(m.metadata->>'correlationStreamName', '-', 1) = $4)
	  AND ($5 IS NULL OR $6 IS NULL
	       OR mod(abs({{SCHEMA_NAME}}.hash_64({{SCHEMA_NAME}}.cardinal_id(m.stream_name))), $6) = $5)
	ORDER BY m.global_position
	LIMIT CASE WHEN $3 = -1 THEN NULL ELSE $3 END
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
