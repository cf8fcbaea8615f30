/*
 * PostgreSQL store internals shared by the asynchronous store (store_pg.c),
 * the blocking set-up (store_pg_migrate.c) and tools: schema naming and
 * quoting, the namespace DDL, and the store's operation-pool counters.
 * The public entry points (store_pg_open, store_pg_migrate, ...) are in store.h.
 */
#ifndef EVENTODB_STORE_PG_H
#define EVENTODB_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Buffer size enough for any quoted schema name made below from a valid
 * namespace id (SPEC D11: at most 54 characters). */
#define STORE_PG_SCHEMA_BUFLEN 160

/* Double-quotes an identifier, doubling embedded '"'. Returns the length
 * written (NUL-terminated), or -1 if it does not fit in cap. */
int store_pg_quote_ident(const char *name, char *out, size_t cap);
/* The unquoted schema of namespace id: "eventodb_" + id. Same contract. */
int store_pg_schema_name(const char *id, char *out, size_t cap);
/* The quoted schema of namespace id: "\"eventodb_<id>\"". Same contract. */
int store_pg_schema_quoted(const char *id, char *out, size_t cap);

/*
 * SQL that creates namespace id's storage: a strict CREATE SCHEMA (so a
 * leftover schema is an error, never silently adopted) followed by every
 * namespace migration with {{SCHEMA_NAME}} substituted. Several statements;
 * run it with the simple query protocol inside one transaction. malloc'd;
 * NULL when out of memory.
 */
char *store_pg_namespace_ddl(const char *id);

/* libpq's multi-line text (PQerrorMessage, a notice) as one line: lines
 * joined so they do not run together ("Connection refused. Is the server
 * running ...?"), blanks collapsed, no trailing newline. Returns the length
 * written into out (NUL-terminated). */
size_t store_pg_one_line(const char *msg, char *out, size_t cap);
/* Why conn could not connect, as one line: "cannot connect to the database
 * at HOST:PORT: <reason>". Returns the length written. */
size_t store_pg_connect_error(const PGconn *conn, char *out, size_t cap);
/* Sends conn's notices (the server's NOTICE and WARNING messages, and
 * libpq's own) to our logger instead of libpq's default, stderr. Call it
 * right after PQconnectStart*, before the first poll. */
void store_pg_log_notices(PGconn *conn);

/* Leading number of a migration file name ("003_x.sql" -> 3), -1 if none. */
int store_pg_file_version(const char *name);

/* Counters of a store made by store_pg_open (for stats and tests). */
struct store_pg_stats {
	int connections;     /* in CONNECTION_OK */
	size_t queued;       /* waiting for a connection */
	uint64_t ops;        /* operations accepted */
	uint64_t rejected;   /* calls that returned -1 */
	uint64_t reconnects; /* connections re-established after a loss */
	size_t statements;   /* distinct SQL texts known */
};
void store_pg_get_stats(struct store *s, struct store_pg_stats *out);

#endif
