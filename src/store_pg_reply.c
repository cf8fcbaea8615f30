/*
 * Results of the PostgreSQL store into replies: rows into the reply structs
 * of store.h (pointing into the PGresult, valid during the callback), and
 * SQLSTATEs into store statuses.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

bool
store_pg_is_error(const PGresult *r)
{
	ExecStatusType s = PQresultStatus(r);

	return s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY;
}

static void *
conn_rows(struct pg_conn *c, size_t bytes)
{
	if (bytes > c->rows_cap) {
		size_t cap = c->rows_cap * 2;
		void *p;

		if (cap < bytes)
			cap = bytes;
		p = realloc(c->rows, cap);
		if (p == NULL)
			return NULL;
		c->rows = p;
		c->rows_cap = cap;
	}
	return c->rows;
}

static int64_t
val_i64(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *
val_str(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static bool
state_is(const char *sqlstate, const char *want)
{
	return strcmp(sqlstate, want) == 0;
}

/*
 * Which record of an import batch hit a unique index, from the detail
 * ("Key (global_position)=(47) already exists.", "Key (id)=(...)" or
 * "Key (stream_name, \"position\")=(s, 0)"): its global position goes into
 * the reply, as the reference (which inserts row by row) reports it.
 */
static void
import_conflict(const struct pg_op *op, const char *detail, struct store_reply *rep)
{
	static const char gp[] = "Key (global_position)=(", id[] = "Key (id)=(";
	char want[64];

	rep->status = ST_POS_EXISTS;
	if (detail == NULL)
		return;
	if (strncmp(detail, gp, sizeof(gp) - 1) == 0) {
		rep->has_value = true;
		rep->value = strtoll(detail + sizeof(gp) - 1, NULL, 10);
		return;
	}
	for (size_t i = 0; i < op->nrecs; i++) {
		const struct store_import_rec *rec = &op->recs[i];
		bool hit;

		if (strncmp(detail, id, sizeof(id) - 1) == 0) {
			hit = strncmp(detail + sizeof(id) - 1, rec->id, strlen(rec->id)) == 0;
		} else {
			/* ...)=(<stream>, <position>) already exists. */
			const char *p = strstr(detail, ")=(");
			size_t sl = strlen(rec->stream);

			snprintf(want, sizeof(want), ", %" PRId64 ") already exists", rec->position);
			hit = p != NULL && strncmp(p + 3, rec->stream, sl) == 0 && strncmp(p + 3 + sl, want, strlen(want)) == 0;
		}
		if (hit) {
			rep->has_value = true;
			rep->value = rec->global_position;
			return;
		}
	}
}

/* Maps a failed result. *stale is set when the failure means the schema
 * behind a prepared statement is gone, so the statement must be dropped. */
void
store_pg_reply_error(struct pg_conn *c, struct pg_op *op, const PGresult *r, struct store_reply *rep, bool *stale)
{
	const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	bool ns_scoped = op->stmt >= 0 && c->st->stmts[op->stmt].ns[0] != '\0';

	if (code == NULL)
		code = "";
	rep->error = msg != NULL ? msg : store_pg_conn_errmsg(c, PQresultErrorMessage(r));
	rep->status = ST_ERROR;
	if (ns_scoped && (state_is(code, "3F000") || state_is(code, "42P01") || state_is(code, "42883"))) {
		/* invalid_schema_name, undefined_table, undefined_function */
		rep->status = ST_NS_NOT_FOUND;
		*stale = c->phase == P_EXEC;
	} else if (state_is(code, "23505")) {
		const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);

		if (op->kind == OP_NS_CREATE)
			rep->status = ST_NS_EXISTS;
		else if (op->kind == OP_WRITE && cons != NULL && strcmp(cons, "messages_id") == 0)
			rep->status = ST_MSG_EXISTS;
		else if (op->kind == OP_IMPORT)
			import_conflict(op, PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL), rep);
	} else if (state_is(code, "42P06") && op->kind == OP_NS_CREATE) {
		/* duplicate_schema: storage left behind without a registry row */
		rep->status = ST_NS_EXISTS;
	} else if (strncmp(code, "08", 2) == 0 || strncmp(code, "57P", 3) == 0 || state_is(code, "53300")) {
		/* connection exceptions, shutdown/termination, too many connections */
		rep->status = ST_UNAVAILABLE;
	}
}

static void
reply_msgs(struct pg_conn *c, const PGresult *r, struct store_reply *rep)
{
	int n = PQntuples(r);
	struct store_msg *m = conn_rows(c, (size_t)(n > 0 ? n : 1) * sizeof(*m));

	if (m == NULL) {
		rep->status = ST_ERROR;
		rep->error = "out of memory";
		return;
	}
	for (int i = 0; i < n; i++) {
		m[i].id = PQgetvalue(r, i, 0);
		m[i].stream = PQgetvalue(r, i, 1);
		m[i].stream_len = (size_t)PQgetlength(r, i, 1);
		m[i].type = PQgetvalue(r, i, 2);
		m[i].position = val_i64(r, i, 3);
		m[i].global_position = val_i64(r, i, 4);
		m[i].data = val_str(r, i, 5);
		m[i].metadata = val_str(r, i, 6);
		m[i].time_us = val_i64(r, i, 7);
	}
	rep->nrows = (size_t)n;
	rep->msgs = m;
}

void
store_pg_reply_ok(struct pg_conn *c, struct pg_op *op, const PGresult *r, struct store_reply *rep)
{
	int n = PQntuples(r);

	rep->status = ST_OK;
	switch (op->kind) {
	case OP_WRITE:
		if (n != 1) {
			rep->status = ST_ERROR;
			rep->error = "write_message_ex returned no row";
		} else if (PQgetisnull(r, 0, 0)) {
			rep->status = ST_CONFLICT;
			rep->actual_version = val_i64(r, 0, 2);
		} else {
			rep->position = val_i64(r, 0, 0);
			rep->global_position = val_i64(r, 0, 1);
		}
		break;
	case OP_MSGS:
	case OP_LAST:
		reply_msgs(c, r, rep);
		break;
	case OP_VERSION:
		rep->has_value = n == 1 && !PQgetisnull(r, 0, 0);
		if (rep->has_value)
			rep->value = val_i64(r, 0, 0);
		break;
	case OP_NS_CREATE:
	case OP_IMPORT:
	case OP_CLEAR:
		break;
	case OP_BATCH: /* one reply per write: store_pg_batch_done */
		rep->status = ST_ERROR;
		rep->error = "internal error: a batch result decoded as one reply";
		break;
	case OP_NS_DELETE:
		if (n != 1 || PQgetisnull(r, 0, 0)) {
			rep->status = ST_NS_NOT_FOUND;
		} else {
			rep->has_value = true;
			rep->value = val_i64(r, 0, 0);
		}
		break;
	case OP_NS_LIST:
	case OP_NS_INFO: {
		struct store_ns_row *ns = conn_rows(c, (size_t)(n > 0 ? n : 1) * sizeof(*ns));

		if (ns == NULL) {
			rep->status = ST_ERROR;
			rep->error = "out of memory";
			break;
		}
		if (op->kind == OP_NS_INFO && n == 0) {
			rep->status = ST_NS_NOT_FOUND;
			break;
		}
		for (int i = 0; i < n; i++) {
			memset(&ns[i], 0, sizeof(ns[i]));
			ns[i].id = PQgetvalue(r, i, 0);
			ns[i].description = PQgetvalue(r, i, 1); /* "" for NULL */
			ns[i].created_at_us = val_i64(r, i, 2);
			ns[i].message_count = val_i64(r, i, 3);
			if (op->kind == OP_NS_INFO) {
				ns[i].stream_count = val_i64(r, i, 4);
				ns[i].has_last_activity = !PQgetisnull(r, i, 5);
				ns[i].last_activity_us = val_i64(r, i, 5);
			}
		}
		rep->nrows = (size_t)n;
		rep->nss = ns;
		break;
	}
	case OP_STREAMS: {
		struct store_stream_row *s = conn_rows(c, (size_t)(n > 0 ? n : 1) * sizeof(*s));

		if (s == NULL) {
			rep->status = ST_ERROR;
			rep->error = "out of memory";
			break;
		}
		for (int i = 0; i < n; i++) {
			s[i].stream = PQgetvalue(r, i, 0);
			s[i].version = val_i64(r, i, 1);
			s[i].last_activity_us = val_i64(r, i, 2);
		}
		rep->nrows = (size_t)n;
		rep->streams = s;
		break;
	}
	case OP_CATS: {
		struct store_cat_row *k = conn_rows(c, (size_t)(n > 0 ? n : 1) * sizeof(*k));

		if (k == NULL) {
			rep->status = ST_ERROR;
			rep->error = "out of memory";
			break;
		}
		for (int i = 0; i < n; i++) {
			k[i].category = PQgetvalue(r, i, 0);
			k[i].stream_count = val_i64(r, i, 1);
			k[i].message_count = val_i64(r, i, 2);
		}
		rep->nrows = (size_t)n;
		rep->cats = k;
		break;
	}
	}
}
