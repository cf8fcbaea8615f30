-- Group commit: several stream.write requests in one statement and one
-- transaction (SPEC D24). Message DB's write_message and EventoDB's
-- write_message_ex stay as they are; this function takes the same category
-- locks, so all three serialize with each other.
--
-- The batch is six arrays of one length, element i being message i in
-- arrival order (expected_versions[i] NULL = no check, metadata[i] NULL =
-- no metadata). One row comes back per message, in order:
--   (n, position, global_position, actual, false)  written at position
--   (n, NULL, NULL, actual, false)                 expectedVersion conflict
--   (n, NULL, NULL, NULL, true)                    the id exists already
-- where actual is the stream's version just before message n was looked at.
--
-- Shape: every category's advisory lock once, in ascending lock-key order
-- (so two batches, or a batch and write_message, can never deadlock); one
-- version lookup per distinct stream. Then, when no message has an
-- expectedVersion and no id is taken or occurs twice (the common case), one
-- set-based INSERT: positions are the stream's version plus row_number() per
-- stream in arrival order, global positions come from the sequence in
-- arrival order (the INSERT takes its rows sorted), RETURNING gives both.
-- Otherwise a fold over the batch in arrival order gives each message the
-- outcome it would have had alone (a conflict or a duplicate does not move
-- the stream's version, so the messages after it see the version as it then
-- is, exactly as D19 describes one-by-one writes), then one INSERT.

-- An id that is already in the table, or that occurs twice in the batch,
-- is answered as a duplicate up front. What cannot be seen up front (an id
-- inserted by a concurrent transaction that has not committed yet, a
-- position taken by an import) makes the INSERT fail and the whole
-- statement with it; the server then writes that batch one message at a
-- time, so each message still gets its own answer.
--
-- Cross-host delivery (migration 004): one pg_notify per written message,
-- with 004's payload. The cost of NOTIFY is per transaction (notifying
-- commits are serialized), which batching already divides by the batch
-- size; per-message payloads keep every one far under the 8000-byte limit
-- (names are at most 1024 bytes through the API) and the listener's parser
-- unchanged, where one payload per batch would have to be split anyway.

CREATE OR REPLACE FUNCTION {{SCHEMA_NAME}}.write_batch(
	ids uuid[],
	stream_names text[],
	types text[],
	data jsonb[],
	metadata jsonb[],
	expected_versions bigint[]
)
RETURNS TABLE (n integer, "position" bigint, global_position bigint, actual bigint, duplicate boolean)
LANGUAGE plpgsql VOLATILE
-- Every look-up here is by an indexed column. The plans are cached per
-- session, and a plan made while the table was still (nearly) empty would
-- scan it whole, every call, for as long as the session lives (until the
-- table is analyzed): that is what a new namespace under load would get.
-- Ruling sequential scans out makes the one query that has no other way
-- (the small listeners table) look expensive, which must not make
-- PostgreSQL compile it (JIT) on every call.
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
	_count integer := coalesce(cardinality(write_batch.ids), 0);
	_r record;
	_ver bigint[];    -- per distinct stream (by its number si): the version now
	_used boolean[];  -- per distinct id (ii): written by this batch
	_pos bigint[];    -- per message: the position it is written at, or NULL
	_gp bigint[];
	_act bigint[];
	_dup boolean[];
	_host text := current_setting('eventodb.host', true);
	_notify boolean;
BEGIN
	IF coalesce(cardinality(write_batch.stream_names), 0) <> _count
	   OR coalesce(cardinality(write_batch.types), 0) <> _count
	   OR coalesce(cardinality(write_batch.data), 0) <> _count
	   OR coalesce(cardinality(write_batch.metadata), 0) <> _count
	   OR coalesce(cardinality(write_batch.expected_versions), 0) <> _count THEN
		RAISE EXCEPTION 'write_batch: the arrays differ in length' USING ERRCODE = '22023';
	END IF;

	-- the subquery's order is the order the locks are taken in
	PERFORM pg_advisory_xact_lock(q.k)
	FROM (SELECT DISTINCT {{SCHEMA_NAME}}.hash_64({{SCHEMA_NAME}}.category(u.s)) AS k
	      FROM unnest(write_batch.stream_names) AS u(s) ORDER BY 1) q;

	_notify := _host IS NOT NULL AND _host <> '' AND EXISTS (
		SELECT 1 FROM eventodb_store.listeners l
		WHERE l.host <> _host AND l.seen > now() - interval '30 seconds');

	IF NOT EXISTS (SELECT 1 FROM unnest(write_batch.expected_versions) AS e(v) WHERE e.v IS NOT NULL)
	   AND (SELECT count(DISTINCT i.i) FROM unnest(write_batch.ids) AS i(i)) = _count
	   AND NOT EXISTS (SELECT 1 FROM {{SCHEMA_NAME}}.messages m WHERE m.id = ANY (write_batch.ids)) THEN
		RETURN QUERY
		WITH b AS (
			SELECT u.o::integer AS o, u.i, u.s, u.t, u.d, u.m
			FROM unnest(write_batch.ids, write_batch.stream_names, write_batch.types, write_batch.data,
			            write_batch.metadata) WITH ORDINALITY AS u(i, s, t, d, m, o)
		), ds AS (
			SELECT q.s, (SELECT coalesce(max(m."position"), -1) FROM {{SCHEMA_NAME}}.messages m
			             WHERE m.stream_name = q.s) AS v0
			FROM (SELECT DISTINCT b.s FROM b) q
		), p AS (
			SELECT b.*, ds.v0 + row_number() OVER (PARTITION BY b.s ORDER BY b.o) AS pos
			FROM b JOIN ds ON ds.s = b.s
		), ins AS (
			INSERT INTO {{SCHEMA_NAME}}.messages AS m (id, stream_name, "position", type, data, metadata)
			SELECT p.i, p.s, p.pos, p.t, p.d, p.m FROM p ORDER BY p.o
			RETURNING m.id, m."position", m.global_position,
			          CASE WHEN NOT _notify THEN NULL
			               WHEN octet_length(m.stream_name) <= 7000 THEN
			                    pg_notify('eventodb', 'w ' || _host || ' {{SCHEMA_NAME}} ' || m."position"::text
			                              || ' ' || m.global_position::text || ' ' || m.stream_name)::text
			               ELSE pg_notify('eventodb', 'r ' || _host)::text END AS notified
		)
		SELECT p.o, ins."position", ins.global_position, ins."position" - 1, false
		FROM p JOIN ins ON ins.id = p.i
		ORDER BY p.o;
		RETURN;
	END IF;

	-- The fold draws global positions before its INSERT: take the lock that
	-- INSERT would take first, so that a POST /import batch (which locks
	-- writes out while it places its own positions) cannot claim them.
	LOCK TABLE {{SCHEMA_NAME}}.messages IN ROW EXCLUSIVE MODE;
	FOR _r IN
		WITH b AS (
			SELECT u.o::integer AS o, u.i, u.s, u.e
			FROM unnest(write_batch.ids, write_batch.stream_names, write_batch.expected_versions)
			     WITH ORDINALITY AS u(i, s, e, o)
		), ds AS (
			SELECT q.s, row_number() OVER () AS si,
			       (SELECT coalesce(max(m."position"), -1) FROM {{SCHEMA_NAME}}.messages m
			        WHERE m.stream_name = q.s) AS v0
			FROM (SELECT DISTINCT b.s FROM b) q
		)
		SELECT b.o, b.e, ds.si, ds.v0, dense_rank() OVER (ORDER BY b.i) AS ii,
		       EXISTS (SELECT 1 FROM {{SCHEMA_NAME}}.messages m WHERE m.id = b.i) AS taken
		FROM b JOIN ds ON ds.s = b.s
		ORDER BY b.o
	LOOP
		IF _ver[_r.si] IS NULL THEN
			_ver[_r.si] := _r.v0;
		END IF;
		IF _r.e IS NOT NULL AND _r.e <> _ver[_r.si] THEN
			_act[_r.o] := _ver[_r.si];
		ELSIF _r.taken OR coalesce(_used[_r.ii], false) THEN
			_dup[_r.o] := true;
		ELSE
			_act[_r.o] := _ver[_r.si];
			_ver[_r.si] := _ver[_r.si] + 1;
			_pos[_r.o] := _ver[_r.si];
			_gp[_r.o] := nextval('{{SCHEMA_NAME}}.messages_global_position_seq'::regclass);
			_used[_r.ii] := true;
		END IF;
	END LOOP;

	INSERT INTO {{SCHEMA_NAME}}.messages (id, stream_name, "position", global_position, type, data, metadata)
	SELECT u.i, u.s, _pos[u.o], _gp[u.o], u.t, u.d, u.m
	FROM unnest(write_batch.ids, write_batch.stream_names, write_batch.types, write_batch.data,
	            write_batch.metadata) WITH ORDINALITY AS u(i, s, t, d, m, o)
	WHERE _pos[u.o] IS NOT NULL
	ORDER BY u.o;

	IF _notify THEN
		FOR i IN 1.._count LOOP
			CONTINUE WHEN _pos[i] IS NULL;
			IF octet_length(write_batch.stream_names[i]) <= 7000 THEN
				PERFORM pg_notify('eventodb', 'w ' || _host || ' {{SCHEMA_NAME}} ' || _pos[i]::text || ' '
				                  || _gp[i]::text || ' ' || write_batch.stream_names[i]);
			ELSE
				PERFORM pg_notify('eventodb', 'r ' || _host);
			END IF;
		END LOOP;
	END IF;

	RETURN QUERY
	SELECT g.o, _pos[g.o], _gp[g.o], _act[g.o], coalesce(_dup[g.o], false)
	FROM generate_series(1, _count) AS g(o)
	ORDER BY g.o;
END;
$$;

INSERT INTO {{SCHEMA_NAME}}._schema_version (version) VALUES (6) ON CONFLICT DO NOTHING;
