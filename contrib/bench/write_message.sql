-- pgbench script (bench-write.sh): Message DB's write_message, one
-- transaction per write, to 100 streams of one category.
\set s random(1, 100)
SELECT "eventodb_default".write_message(gen_random_uuid()::text, 'pgb-' || :s, 'Benched', '{"n": 1, "text": "hello world"}');
