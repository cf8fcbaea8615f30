/* Backend selection by URL scheme, and the PostgreSQL backend's table. */
#include "autoconf.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "evlib.h"
#include "store.h"

static int
pg_check(const struct store_cfg *c, char *err, size_t errlen)
{
	char *msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(c->url, &msg);

	if (opts == NULL) {
		/* libpq's text names the bad part, never the whole URL (which may
		 * hold a password) */
		size_t n = msg != NULL ? strcspn(msg, "\n") : 0;
		snprintf(err, errlen, "invalid --db-url: %.*s", (int)n, msg != NULL ? msg : "out of memory");
		PQfreemem(msg);
		return -1;
	}
	PQconninfoFree(opts);
	return 0;
}

static int
pg_migrate(const struct store_cfg *c, char *err, size_t errlen)
{
	return store_pg_migrate(c->url, err, errlen);
}

static int
pg_load(const struct store_cfg *c, void (*fn)(const struct ns_seed *, void *), void *arg, char *err, size_t errlen)
{
	return store_pg_load_namespaces(c->url, fn, arg, err, errlen);
}

static int
pg_ensure(const struct store_cfg *c, const char *id, const char *token_hash, const char *description, bool *created,
          char *stored_hash, char *err, size_t errlen)
{
	return store_pg_ensure_namespace(c->url, id, token_hash, description, created, stored_hash, err, errlen);
}

static struct store *
pg_open(struct event_base *base, const struct store_cfg *c)
{
	return store_pg_open(base, c);
}

const struct store_backend store_backend_pg = {
	.name = "postgres",
	.check = pg_check,
	.migrate = pg_migrate,
	.load_namespaces = pg_load,
	.ensure_namespace = pg_ensure,
	.open = pg_open,
	.cleanup = NULL,
};

#ifdef HAVE_SQLITE
extern const struct store_backend store_backend_sqlite;
#endif

const struct store_backend *
store_backend_for(const char *url, char *err, size_t errlen)
{
	const char *colon;

	if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
		return &store_backend_pg;
#ifdef HAVE_SQLITE
	if (strncmp(url, "sqlite://", 9) == 0)
		return &store_backend_sqlite;
#endif
	/* the value itself is not repeated: it may hold a password */
	colon = strstr(url, "://");
	if (colon == NULL || colon == url || strcspn(url, ":/@?") < (size_t)(colon - url))
		snprintf(err, errlen, "invalid --db-url: not a URL; expected postgres://user:pass@host:port/db%s",
#ifdef HAVE_SQLITE
		         " or sqlite://FILE"
#else
		         ""
#endif
		);
	else
		snprintf(err, errlen, "unsupported database scheme %.*s:// in --db-url (use postgres://%s)",
		         (int)utf8_prefix(url, (size_t)(colon - url), 32), url,
#ifdef HAVE_SQLITE
		         " or sqlite://"
#else
		         ""
#endif
		);
	return NULL;
}
