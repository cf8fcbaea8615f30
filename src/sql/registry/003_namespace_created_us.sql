-- Namespace creation time with microseconds (SPEC D12: one precision, the
-- stored one, from every method). created_at keeps whole seconds, as the
-- reference registry has it (SPEC 5.1); created_at_us is what the server
-- reads. Readers take COALESCE(created_at_us, created_at * 1000000), so a
-- row written by an older server during a rolling upgrade still reads
-- right; the UPDATE gives the rows that exist today their value.

ALTER TABLE eventodb_store.namespaces ADD COLUMN IF NOT EXISTS created_at_us BIGINT;

UPDATE eventodb_store.namespaces SET created_at_us = created_at * 1000000 WHERE created_at_us IS NULL;
