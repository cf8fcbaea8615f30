/*
 * Blocking PostgreSQL set-up: registry and namespace migrations, loading the
 * namespace registry, and creating the default namespace. Runs only in the
 * supervisor before any worker exists and in command-line tools, so plain
 * blocking libpq is right here; every connection is closed before returning.
 * Also home of the schema-name and DDL helpers shared with store_pg.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "evlib.h"
#include "log.h"
#include "store.h"
#include "store_pg.h"
#include "store_pg_sql.h"

/* Session advisory lock taken by everything here, so two servers (or a
 * server and a tool) starting at once never run migrations or create the
 * default namespace concurrently. "eventodb" in ASCII. */
#define STORE_PG_MIGRATE_LOCK "7311142386452427874"

#define SCHEMA_TOKEN "{{SCHEMA_NAME}}"

int
store_pg_quote_ident(const char *name, char *out, size_t cap)
{
	size_t n = 0;

	if (cap < 3)
		return -1;
	out[n++] = '"';
	for (const char *p = name; *p != '\0'; p++) {
		/* room for this char, a possible doubling, the closing quote and NUL */
		if (n + 4 > cap)
			return -1;
		if (*p == '"')
			out[n++] = '"';
		out[n++] = *p;
	}
	out[n++] = '"';
	out[n] = '\0';
	return (int)n;
}

int
store_pg_schema_name(const char *id, char *out, size_t cap)
{
	int n = snprintf(out, cap, "eventodb_%s", id);

	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

int
store_pg_schema_quoted(const char *id, char *out, size_t cap)
{
	char name[STORE_PG_SCHEMA_BUFLEN];

	if (store_pg_schema_name(id, name, sizeof(name)) < 0)
		return -1;
	return store_pg_quote_ident(name, out, cap);
}

int
store_pg_file_version(const char *name)
{
	int v = 0;
	const char *p;

	for (p = name; *p >= '0' && *p <= '9'; p++) {
		if (v > 100000)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return p == name ? -1 : v;
}

/* text with every {{SCHEMA_NAME}} replaced by quoted, appended at *buf
 * (grown with realloc). 0, or -1 when out of memory. */
static int
append_substituted(char **buf, size_t *len, size_t *cap, const char *text, const char *quoted)
{
	size_t tl = strlen(SCHEMA_TOKEN), ql = strlen(quoted);
	const char *p = text, *hit;

	for (;;) {
		size_t chunk, need;

		hit = strstr(p, SCHEMA_TOKEN);
		chunk = hit != NULL ? (size_t)(hit - p) : strlen(p);
		need = *len + chunk + (hit != NULL ? ql : 0) + 1;
		if (need > *cap) {
			size_t ncap = *cap ? *cap : 4096;
			char *nb;

			while (ncap < need)
				ncap *= 2;
			nb = realloc(*buf, ncap);
			if (nb == NULL)
				return -1;
			*buf = nb;
			*cap = ncap;
		}
		memcpy(*buf + *len, p, chunk);
		*len += chunk;
		if (hit == NULL)
			break;
		memcpy(*buf + *len, quoted, ql);
		*len += ql;
		p = hit + tl;
	}
	(*buf)[*len] = '\0';
	return 0;
}

/* The embedded files of one kind, ordered by name. Returns the count. */
static size_t
files_of_kind(const char *kind, const struct sql_file **out, size_t max)
{
	size_t n = 0;

	for (const struct sql_file *f = sql_files; f->kind != NULL; f++) {
		size_t i;

		if (strcmp(f->kind, kind) != 0 || n == max)
			continue;
		/* insertion sort: a handful of files */
		for (i = n; i > 0 && strcmp(out[i - 1]->name, f->name) > 0; i--)
			out[i] = out[i - 1];
		out[i] = f;
		n++;
	}
	return n;
}

#define MAX_SQL_FILES 64

char *
store_pg_namespace_ddl(const char *id)
{
	const struct sql_file *files[MAX_SQL_FILES];
	char quoted[STORE_PG_SCHEMA_BUFLEN];
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (store_pg_schema_quoted(id, quoted, sizeof(quoted)) < 0)
		return NULL;
	n = files_of_kind("namespace", files, MAX_SQL_FILES);
	if (append_substituted(&buf, &len, &cap, "CREATE SCHEMA " SCHEMA_TOKEN ";\n", quoted) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (append_substituted(&buf, &len, &cap, files[i]->text, quoted) < 0 ||
		    append_substituted(&buf, &len, &cap, ";\n", quoted) < 0)
			goto fail;
	}
	return buf;
fail:
	free(buf);
	return NULL;
}

/* ---- messages and notices ---------------------------------------------------- */

size_t
store_pg_one_line(const char *msg, char *out, size_t cap)
{
	size_t n = 0;
	bool space = false, newline = false;

	if (cap == 0)
		return 0;
	for (const char *p = msg != NULL ? msg : ""; *p != '\0'; p++) {
		if (*p == '\n') {
			newline = n > 0;
			continue;
		}
		if (*p == '\t' || *p == ' ' || *p == '\r') {
			space = n > 0;
			continue;
		}
		/* a line that starts a sentence of its own ("Connection refused"
		 * / "Is the server running ...?") gets a full stop before it; a
		 * wrapped sentence just a space */
		if (newline && *p >= 'A' && *p <= 'Z' && strchr(".?!:;", out[n - 1]) == NULL) {
			if (n + 3 >= cap)
				break;
			out[n++] = '.';
			space = true;
		}
		if ((space || newline) && n + 2 < cap)
			out[n++] = ' ';
		space = newline = false;
		if (n + 1 >= cap)
			break;
		out[n++] = *p;
	}
	n = utf8_prefix(out, n, n);
	out[n] = '\0';
	return n;
}

/* HOST:PORT of conn's (last) connection attempt, [v6]:port for IPv6. */
static void
conn_where(const PGconn *conn, char *out, size_t cap)
{
	const char *host = conn != NULL ? PQhost(conn) : NULL, *port = conn != NULL ? PQport(conn) : NULL;

	if (host == NULL || *host == '\0')
		host = "localhost";
	if (port == NULL || *port == '\0')
		port = "5432";
	snprintf(out, cap, strchr(host, ':') != NULL && host[0] != '/' ? "[%s]:%s" : "%s:%s", host, port);
}

size_t
store_pg_connect_error(const PGconn *conn, char *out, size_t cap)
{
	const char *p = conn != NULL ? PQerrorMessage(conn) : "out of memory", *failed;
	char where[320];
	int n;

	conn_where(conn, where, sizeof(where));
	/* libpq 14+: 'connection to server at "h" (a), port p failed: REASON'
	 * or 'connection to server on socket "s" failed: REASON'; the
	 * headline already says where */
	if (strncmp(p, "connection to server ", 21) == 0 && (failed = strstr(p, " failed: ")) != NULL &&
	    memchr(p, '\n', (size_t)(failed - p)) == NULL)
		p = failed + 9;
	n = snprintf(out, cap, "cannot connect to the database at %s: ", where);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n + store_pg_one_line(*p != '\0' ? p : "unknown error", out + n, cap - (size_t)n);
}

/* Server NOTICEs (and libpq's own, which the default processor would
 * write raw to stderr) as log lines: WARNING at warn; NOTICE, INFO, LOG
 * and DEBUG at debug, since in the set-up they are routine ("already
 * exists, skipping", "drop cascades to ..."). */
static void
notice_receiver(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char line[2048];

	(void)arg;
	store_pg_one_line(PQresultErrorMessage(res), line, sizeof(line));
	log_msg(sev != NULL && strcmp(sev, "WARNING") == 0 ? LVL_WARN : LVL_DEBUG, "postgres %s", line);
}

void
store_pg_log_notices(PGconn *conn)
{
	if (conn != NULL)
		PQsetNoticeReceiver(conn, notice_receiver, NULL);
}

/* ---- blocking helpers --------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	char raw[2048];
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	utf8_vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* libpq messages span lines (DETAIL, HINT, a trailing newline): the
	 * caller logs err as one line */
	store_pg_one_line(raw, err, errlen);
}

/* A connection's wait, bounded by the URL's connect_timeout as libpq's
 * blocking connect bounds it (none by default). 1 ready, 0 timed out. */
static int
connect_wait(PGconn *conn, PostgresPollingStatusType st, int timeout_ms)
{
	struct pollfd pfd = {PQsocket(conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
	int rc;

	do
		rc = poll(&pfd, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	return rc != 0;
}

/* connect_timeout of conn's options in milliseconds, -1 for none; libpq
 * treats values below 2 s as 2 s. */
static int
connect_timeout_ms(PGconn *conn)
{
	PQconninfoOption *opts = PQconninfo(conn), *o;
	int ms = -1;

	for (o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL && atoi(o->val) > 0)
			ms = (atoi(o->val) < 2 ? 2 : atoi(o->val)) * 1000;
	PQconninfoFree(opts);
	return ms;
}

/* A blocking connection whose notices go through our logger from its first
 * message on (PQconnectdb would keep the default processor, which writes
 * to stderr, until after start-up, when the server may already have warned,
 * e.g. about a collation version mismatch). */
static PGconn *
migrate_connect(const char *url, char *err, size_t errlen)
{
	const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *const vals[] = {url, "eventodb", NULL};
	PGconn *conn = PQconnectStartParams(keys, vals, 1);
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int timeout_ms;

	if (conn == NULL) {
		seterr(err, errlen, "cannot connect to the database: out of memory");
		return NULL;
	}
	store_pg_log_notices(conn);
	timeout_ms = connect_timeout_ms(conn);
	while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		if (!connect_wait(conn, st, timeout_ms)) {
			char where[320];
			conn_where(conn, where, sizeof(where));
			seterr(err, errlen, "cannot connect to the database at %s: timeout expired", where);
			PQfinish(conn);
			return NULL;
		}
		st = PQconnectPoll(conn);
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		if (err != NULL && errlen > 0)
			store_pg_connect_error(conn, err, errlen);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Runs sql (possibly several statements) and checks the last result. */
static int
exec_ok(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		seterr(err, errlen, "%s: %s", what, PQerrorMessage(conn));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* Runs a one-statement query with text parameters; returns the result when
 * its status is COMMAND_OK or TUPLES_OK, else NULL with err set. */
static PGresult *
exec_params(PGconn *conn, const char *sql, int n, const char *const *vals, const char *what, char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		seterr(err, errlen, "%s: %s", what, PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Runs text in its own transaction, then the optional bookkeeping statement
 * (one parameter) in the same transaction. */
static int
apply_in_tx(PGconn *conn, const char *text, const char *record_sql, const char *record_arg, const char *what, char *err,
            size_t errlen)
{
	PGresult *res;

	if (exec_ok(conn, "BEGIN", what, err, errlen) < 0)
		return -1;
	if (exec_ok(conn, text, what, err, errlen) < 0)
		goto rollback;
	if (record_sql != NULL) {
		res = exec_params(conn, record_sql, 1, &record_arg, what, err, errlen);
		if (res == NULL)
			goto rollback;
		PQclear(res);
	}
	if (exec_ok(conn, "COMMIT", what, err, errlen) < 0)
		goto rollback;
	return 0;
rollback:
	/* the error is already in err; a failing ROLLBACK adds nothing useful */
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}

static int
migrate_lock(PGconn *conn, char *err, size_t errlen)
{
	return exec_ok(conn, "SELECT pg_advisory_lock(" STORE_PG_MIGRATE_LOCK ")", "taking the migration lock", err,
	               errlen);
}

/* Released explicitly so the lock is not held while the caller keeps going;
 * PQfinish would release it too. */
static void
migrate_unlock(PGconn *conn)
{
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" STORE_PG_MIGRATE_LOCK ")"));
}

/* ---- migrations ------------------------------------------------------------ */

static int
migrate_registry(PGconn *conn, char *err, size_t errlen)
{
	const struct sql_file *files[MAX_SQL_FILES];
	size_t n = files_of_kind("registry", files, MAX_SQL_FILES);
	char what[160];

	/* The bookkeeping table must exist before we can ask what is applied;
	 * 001 creates it too, for readers of the file. */
	if (exec_ok(conn,
	            "CREATE SCHEMA IF NOT EXISTS eventodb_store;"
	            "CREATE TABLE IF NOT EXISTS eventodb_store.schema_migrations ("
	            " version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
	            "creating the migration table", err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *name = files[i]->name;
		PGresult *res;
		bool applied;

		snprintf(what, sizeof(what), "registry migration %s", name);
		res = exec_params(conn, "SELECT 1 FROM eventodb_store.schema_migrations WHERE version = $1", 1, &name,
		                  what, err, errlen);
		if (res == NULL)
			return -1;
		applied = PQntuples(res) > 0;
		PQclear(res);
		if (applied)
			continue;
		if (apply_in_tx(conn, files[i]->text,
		                "INSERT INTO eventodb_store.schema_migrations (version, applied_at)"
		                " VALUES ($1, extract(epoch FROM now())::bigint)",
		                name, what, err, errlen) < 0)
			return -1;
		log_info("applied registry migration %s", name);
	}
	return 0;
}

/* Brings one namespace schema up to the newest embedded version; adds the
 * number of files applied to *applied. */
static int
migrate_namespace(PGconn *conn, const char *id, int *applied, char *err, size_t errlen)
{
	const struct sql_file *files[MAX_SQL_FILES];
	size_t n = files_of_kind("namespace", files, MAX_SQL_FILES);
	char quoted[STORE_PG_SCHEMA_BUFLEN], reg[STORE_PG_SCHEMA_BUFLEN + 32], sql[STORE_PG_SCHEMA_BUFLEN + 96];
	char what[160];
	const char *regp = reg;
	PGresult *res;
	long current = 0;
	bool has_table;

	if (store_pg_schema_quoted(id, quoted, sizeof(quoted)) < 0) {
		seterr(err, errlen, "namespace '%s': id too long", id);
		return -1;
	}
	snprintf(what, sizeof(what), "namespace '%s' migration", id);
	/* to_regclass answers NULL instead of failing when the schema or the
	 * table is missing: version 0, apply everything. */
	snprintf(reg, sizeof(reg), "%s._schema_version", quoted);
	res = exec_params(conn, "SELECT to_regclass($1) IS NOT NULL", 1, &regp, what, err, errlen);
	if (res == NULL)
		return -1;
	has_table = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (has_table) {
		snprintf(sql, sizeof(sql), "SELECT COALESCE(MAX(version), 0) FROM %s._schema_version", quoted);
		res = exec_params(conn, sql, 0, NULL, what, err, errlen);
		if (res == NULL)
			return -1;
		current = PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		PQclear(res);
	}
	for (size_t i = 0; i < n; i++) {
		int v = store_pg_file_version(files[i]->name);
		char *text = NULL;
		size_t len = 0, cap = 0;
		int rc;

		if (v <= current)
			continue;
		if (append_substituted(&text, &len, &cap, files[i]->text, quoted) < 0) {
			free(text);
			seterr(err, errlen, "%s: out of memory", what);
			return -1;
		}
		snprintf(what, sizeof(what), "namespace '%s' migration %s", id, files[i]->name);
		/* the file records its own version in _schema_version */
		rc = apply_in_tx(conn, text, NULL, NULL, what, err, errlen);
		free(text);
		if (rc < 0)
			return -1;
		(*applied)++;
	}
	return 0;
}

int
store_pg_migrate(const char *url, char *err, size_t errlen)
{
	PGconn *conn = migrate_connect(url, err, errlen);
	PGresult *res = NULL;
	int rc = -1, applied = 0, nns;

	if (conn == NULL)
		return -1;
	if (migrate_lock(conn, err, errlen) < 0)
		goto out;
	if (migrate_registry(conn, err, errlen) < 0)
		goto unlock;
	res = exec_params(conn, "SELECT id FROM eventodb_store.namespaces ORDER BY id", 0, NULL,
	                  "reading the namespace registry", err, errlen);
	if (res == NULL)
		goto unlock;
	nns = PQntuples(res);
	for (int i = 0; i < nns; i++) {
		if (migrate_namespace(conn, PQgetvalue(res, i, 0), &applied, err, errlen) < 0)
			goto unlock;
	}
	if (applied > 0)
		log_info("applied %d namespace schema %s", applied, applied == 1 ? "migration" : "migrations");
	rc = 0;
unlock:
	PQclear(res);
	migrate_unlock(conn);
out:
	PQfinish(conn);
	if (rc != 0 && err != NULL && errlen > 0) {
		/* connected, then failed: say it was the migration */
		char why[1024];
		snprintf(why, sizeof(why), "%s", err);
		seterr(err, errlen, "database migration failed: %s", why);
	}
	return rc;
}

int
store_pg_load_namespaces(const char *url, void (*fn)(const struct ns_seed *, void *), void *arg, char *err,
                         size_t errlen)
{
	PGconn *conn = migrate_connect(url, err, errlen);
	PGresult *res;
	int n;

	if (conn == NULL)
		return -1;
	res = exec_params(conn, "SELECT id, token_hash, created_at FROM eventodb_store.namespaces ORDER BY id", 0, NULL,
	                  "reading the namespace registry", err, errlen);
	if (res == NULL) {
		PQfinish(conn);
		return -1;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		struct ns_seed seed;
		const char *id = PQgetvalue(res, i, 0), *hash = PQgetvalue(res, i, 1);

		memset(&seed, 0, sizeof(seed));
		if (strlen(id) >= sizeof(seed.id) || strlen(hash) != sizeof(seed.token_hash) - 1) {
			log_warn("namespace registry: skipping malformed row '%.*s'",
			         (int)utf8_prefix(id, strlen(id), 80), id);
			continue;
		}
		memcpy(seed.id, id, strlen(id) + 1);
		memcpy(seed.token_hash, hash, sizeof(seed.token_hash));
		seed.created_at = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		fn(&seed, arg);
	}
	PQclear(res);
	PQfinish(conn);
	return 0;
}

int
store_pg_ensure_namespace(const char *url, const char *id, const char *token_hash, const char *description,
                          bool *created, char *stored_hash, char *err, size_t errlen)
{
	char schema[STORE_PG_SCHEMA_BUFLEN], now[24];
	const char *vals[5];
	PGconn *conn;
	PGresult *res;
	char *ddl = NULL;
	int rc = -1;

	*created = false;
	if (store_pg_schema_name(id, schema, sizeof(schema)) < 0 || strlen(schema) > 63) {
		seterr(err, errlen, "namespace '%s': id too long", id);
		return -1;
	}
	conn = migrate_connect(url, err, errlen);
	if (conn == NULL)
		return -1;
	if (migrate_lock(conn, err, errlen) < 0)
		goto out;
	vals[0] = id;
	res = exec_params(conn, "SELECT token_hash FROM eventodb_store.namespaces WHERE id = $1", 1, vals,
	                  "reading the namespace registry", err, errlen);
	if (res == NULL)
		goto unlock;
	if (PQntuples(res) > 0) {
		if (stored_hash != NULL)
			snprintf(stored_hash, 65, "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		rc = 0;
		goto unlock;
	}
	PQclear(res);

	ddl = store_pg_namespace_ddl(id);
	if (ddl == NULL) {
		seterr(err, errlen, "creating namespace '%s': out of memory", id);
		goto unlock;
	}
	snprintf(now, sizeof(now), "%" PRId64, now_unix_us());
	vals[1] = token_hash;
	vals[2] = schema;
	vals[3] = description;
	vals[4] = now;
	/* registry row and schema commit together or not at all */
	if (exec_ok(conn, "BEGIN", "creating the namespace", err, errlen) < 0)
		goto unlock;
	res = exec_params(conn,
	                  "INSERT INTO eventodb_store.namespaces"
	                  " (id, token_hash, schema_name, description, created_at, created_at_us)"
	                  " VALUES ($1, $2, $3, $4, $5::bigint / 1000000, $5::bigint)",
	                  5, vals, "registering the namespace", err, errlen);
	if (res == NULL)
		goto rollback;
	PQclear(res);
	if (exec_ok(conn, ddl, "creating the namespace schema", err, errlen) < 0 ||
	    exec_ok(conn, "COMMIT", "creating the namespace", err, errlen) < 0)
		goto rollback;
	*created = true;
	rc = 0;
	goto unlock;
rollback:
	PQclear(PQexec(conn, "ROLLBACK"));
unlock:
	free(ddl);
	migrate_unlock(conn);
out:
	PQfinish(conn);
	return rc;
}
