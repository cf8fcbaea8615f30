/*
 * Statements of the PostgreSQL store: the SQL text of every statement
 * variant for a namespace schema, and the store's table of distinct texts
 * (numbered, named "q<n>" on the connections, prepared once per connection).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"
#include "store_pg_int.h"

/* Creation time in microseconds (registry migration 003; a row an older
 * server wrote has only whole seconds). */
#define NS_CREATED_US "COALESCE(created_at_us, created_at * 1000000)"

#define MSG_COLS                                                                                                       \
	"id::text, stream_name, type, \"position\", global_position, data::text, metadata::text, "                     \
	"(extract(epoch FROM \"time\") * 1000000)::int8"

static uint32_t
stmt_hash(const char *ns, int variant)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)ns; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return (h ^ (uint32_t)variant) * 16777619u;
}

/* The SQL of one statement variant for schema s (quoted); malloc'd. */
static char *
stmt_build(int variant, const char *s, int *nparams)
{
	char buf[2048];
	int n = -1;

	switch (variant) {
	case V_WRITE:
		*nparams = 6;
		n = snprintf(buf, sizeof(buf),
		             "SELECT \"position\", global_position, actual"
		             " FROM %s.write_message_ex($1, $2, $3, $4::jsonb, $5::jsonb, $6::int8)",
		             s);
		break;
	case V_WRITE_BATCH:
		/* the six arrays go in binary (store_pg_batch.c) */
		*nparams = 6;
		n = snprintf(buf, sizeof(buf),
		             "SELECT n, \"position\", global_position, actual, duplicate"
		             " FROM %s.write_batch($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::int8[])",
		             s);
		break;
	case V_STREAM_POS:
	case V_STREAM_GPOS:
		*nparams = 3;
		n = snprintf(buf, sizeof(buf),
		             "SELECT " MSG_COLS " FROM %s.messages"
		             " WHERE stream_name = $1 AND %s >= $2::int8"
		             " ORDER BY \"position\" LIMIT $3::int8",
		             s, variant == V_STREAM_POS ? "\"position\"" : "global_position");
		break;
	case V_LAST:
		*nparams = 1;
		n = snprintf(buf, sizeof(buf),
		             "SELECT " MSG_COLS " FROM %s.messages WHERE stream_name = $1"
		             " ORDER BY \"position\" DESC LIMIT 1",
		             s);
		break;
	case V_LAST_TYPE:
		*nparams = 2;
		n = snprintf(buf, sizeof(buf),
		             "SELECT " MSG_COLS " FROM %s.messages WHERE stream_name = $1 AND type = $2"
		             " ORDER BY \"position\" DESC LIMIT 1",
		             s);
		break;
	case V_VERSION:
		*nparams = 1;
		n = snprintf(buf, sizeof(buf), "SELECT max(\"position\") FROM %s.messages WHERE stream_name = $1", s);
		break;
	case V_STREAMS:
		/* Literal byte-wise prefix (starts_with, not LIKE) and byte-wise
		 * keyset order (SPEC D18). */
		*nparams = 3;
		n = snprintf(buf, sizeof(buf),
		             "SELECT stream_name, max(\"position\"),"
		             " (extract(epoch FROM max(\"time\")) * 1000000)::int8"
		             " FROM %s.messages"
		             " WHERE ($1::text = '' OR starts_with(stream_name COLLATE \"C\", $1::text))"
		             " AND stream_name COLLATE \"C\" > $2::text"
		             " GROUP BY stream_name ORDER BY stream_name COLLATE \"C\" LIMIT $3::int8",
		             s);
		break;
	case V_CATEGORIES:
		*nparams = 0;
		n = snprintf(
		    buf, sizeof(buf),
		    "SELECT split_part(stream_name, '-', 1) COLLATE \"C\", count(DISTINCT stream_name), count(*)"
		    " FROM %s.messages GROUP BY 1 ORDER BY 1",
		    s);
		break;
	case V_IMPORT:
		/*
		 * One import batch: $1 is a JSON array of {i,s,t,p,g,d,m,u}
		 * records. The function (namespace migration 005) locks out the
		 * writes while it inserts and moves the sequence, so no write
		 * can draw a position of the batch; the batch commits or fails
		 * as a whole, and the sequence never goes backwards.
		 */
		*nparams = 1;
		n = snprintf(buf, sizeof(buf), "SELECT %s.import_batch($1::json)", s);
		break;
	case V_CLEAR:
		/* transactional, and restarts the sequence the table owns */
		*nparams = 0;
		n = snprintf(buf, sizeof(buf), "TRUNCATE %s.messages RESTART IDENTITY", s);
		break;
	case V_NS_LIST:
		*nparams = 0;
		n = snprintf(buf, sizeof(buf),
		             "SELECT id, description, " NS_CREATED_US ", eventodb_store.message_count(schema_name)"
		             " FROM eventodb_store.namespaces ORDER BY 3 DESC, id");
		break;
	case V_NS_INFO:
		*nparams = 1;
		n = snprintf(buf, sizeof(buf),
		             "SELECT n.id, n.description, " NS_CREATED_US ", s.message_count, s.stream_count,"
		             " s.last_activity_us FROM eventodb_store.namespaces n"
		             " CROSS JOIN LATERAL eventodb_store.namespace_stats(n.schema_name) s WHERE n.id = $1");
		break;
	case V_NS_DELETE:
		*nparams = 1;
		n = snprintf(buf, sizeof(buf), "SELECT eventodb_store.drop_namespace($1)");
		break;
	default:
		if (variant >= V_CATEGORY && variant < V_CATEGORY + 8) {
			/*
			 * Params in order: [category] gpos [correlation] [size member]
			 * limit. A named category is written so that only the
			 * messages_category index can serve it: with the obvious
			 * "category = $1 ... ORDER BY global_position", the generic
			 * plan of a prepared statement walks the primary key and
			 * filters, which reads the whole table for a rare category.
			 * (category, global_position) >= ($1, $2) AND category <= $1
			 * selects exactly category = $1 AND global_position >= $2, and
			 * ordering by (category, global_position) equals ordering by
			 * global_position, an order only this index provides.
			 */
			int f = variant - V_CATEGORY, k = 1, m;
			const char *order = "global_position";

			m = snprintf(buf, sizeof(buf), "SELECT " MSG_COLS " FROM %s.messages WHERE ", s);
			if (f & CAT_NAME) {
				m += snprintf(buf + m, sizeof(buf) - m,
				              "(split_part(stream_name, '-', 1), global_position) >= ($1, $2::int8)"
				              " AND split_part(stream_name, '-', 1) <= $1");
				order = "split_part(stream_name, '-', 1), global_position";
				k = 3;
			} else {
				m += snprintf(buf + m, sizeof(buf) - m, "global_position >= $1::int8");
				k = 2;
			}
			if (f & CAT_CORR)
				m += snprintf(buf + m, sizeof(buf) - m,
				              " AND split_part(metadata->>'correlationStreamName', '-', 1) = $%d", k++);
			if (f & CAT_GROUP) {
				m += snprintf(
				    buf + m, sizeof(buf) - m,
				    " AND %s.id(stream_name) IS NOT NULL"
				    " AND mod(abs(%s.hash_64(%s.cardinal_id(stream_name))), $%d::int8) = $%d::int8",
				    s, s, s, k, k + 1);
				k += 2;
			}
			m += snprintf(buf + m, sizeof(buf) - m, " ORDER BY %s LIMIT $%d::int8", order, k);
			*nparams = k;
			n = m;
		}
		break;
	}
	if (n < 0 || (size_t)n >= sizeof(buf))
		return NULL;
	return strdup(buf);
}

/* Grows every connection's prepared[] to the statement table's capacity, so
 * marking a statement never allocates on the request path. */
int
store_pg_stmt_grow_conns(struct store_pg *st, size_t cap)
{
	for (int i = 0; i < st->npool; i++) {
		struct pg_conn *c = &st->conns[i];
		uint8_t *p;

		if (c->prepared_cap >= cap)
			continue;
		p = realloc(c->prepared, cap);
		if (p == NULL)
			return -1;
		memset(p + c->prepared_cap, 0, cap - c->prepared_cap);
		c->prepared = p;
		c->prepared_cap = cap;
	}
	return 0;
}

static int
stmt_rehash(struct store_pg *st, size_t nslots)
{
	int *slots = calloc(nslots, sizeof(*slots));

	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < st->nstmts; i++) {
		size_t j = st->stmts[i].hash & (nslots - 1);

		while (slots[j] != 0)
			j = (j + 1) & (nslots - 1);
		slots[j] = (int)i + 1;
	}
	free(st->slots);
	st->slots = slots;
	st->nslots = nslots;
	return 0;
}

int
store_pg_stmt_get(struct store_pg *st, const char *ns, int variant)
{
	uint32_t h = stmt_hash(ns, variant);
	size_t j = h & (st->nslots - 1);
	char quoted[STORE_PG_SCHEMA_BUFLEN];
	struct pg_stmt *sp;

	for (; st->slots[j] != 0; j = (j + 1) & (st->nslots - 1)) {
		sp = &st->stmts[st->slots[j] - 1];
		if (sp->hash == h && sp->variant == variant && strcmp(sp->ns, ns) == 0)
			return st->slots[j] - 1;
	}
	/* new statement: keep the table at most half full */
	if ((st->nstmts + 1) * 2 > st->nslots) {
		if (stmt_rehash(st, st->nslots * 2) < 0)
			return -1;
		return store_pg_stmt_get(st, ns, variant);
	}
	if (st->nstmts == st->stmts_cap) {
		size_t cap = st->stmts_cap * 2;
		struct pg_stmt *s = realloc(st->stmts, cap * sizeof(*s));

		if (s == NULL)
			return -1;
		st->stmts = s;
		st->stmts_cap = cap;
	}
	if (store_pg_stmt_grow_conns(st, st->stmts_cap) < 0)
		return -1;
	if (store_pg_schema_quoted(ns, quoted, sizeof(quoted)) < 0)
		return -1;
	sp = &st->stmts[st->nstmts];
	memset(sp, 0, sizeof(*sp));
	sp->ns = strdup(ns);
	sp->sql = stmt_build(variant, quoted, &sp->nparams);
	if (sp->ns == NULL || sp->sql == NULL) {
		free(sp->ns);
		free(sp->sql);
		return -1;
	}
	sp->variant = variant;
	sp->hash = h;
	st->slots[j] = (int)st->nstmts + 1;
	return (int)st->nstmts++;
}
