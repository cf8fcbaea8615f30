/* Migration files embedded at build time (src/sql, see build-aux/embed-sql.sh). */
#ifndef EVENTODB_STORE_PG_SQL_H
#define EVENTODB_STORE_PG_SQL_H
struct sql_file {
	const char *kind; /* "registry" or "namespace" */
	const char *name; /* "001_namespace_registry.sql"; sorted by name within a kind */
	const char *text; /* namespace files use {{SCHEMA_NAME}} for the quoted schema */
};
extern const struct sql_file sql_files[]; /* terminated by a NULL kind */
#endif
