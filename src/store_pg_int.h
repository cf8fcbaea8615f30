/*
 * Internals of the asynchronous PostgreSQL store, shared by its files:
 * store_pg.c (operations, queue, the connection state machine, store_ops),
 * store_pg_stmt.c (statement texts and the per-store statement table),
 * and store_pg_reply.c (results into replies). Nothing outside these files
 * includes it.
 */
#ifndef EVENTODB_STORE_PG_INT_H
#define EVENTODB_STORE_PG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "store.h"


/* Tunables; overridable at build time (the tests shorten the waits). */
#ifndef STORE_PG_QUEUE_MAX
#define STORE_PG_QUEUE_MAX 4096 /* waiting requests; beyond that calls return -1 (503) */
#endif
#ifndef STORE_PG_QUEUE_WAIT_MS
#define STORE_PG_QUEUE_WAIT_MS 10000 /* longest wait for a free connection */
#endif
#ifndef STORE_PG_CONNECT_TIMEOUT_MS
#define STORE_PG_CONNECT_TIMEOUT_MS 10000
#endif
#ifndef STORE_PG_BACKOFF_MIN_MS
#define STORE_PG_BACKOFF_MIN_MS 100
#endif
#ifndef STORE_PG_BACKOFF_MAX_MS
#define STORE_PG_BACKOFF_MAX_MS 5000
#endif
#define STORE_PG_MAX_PARAMS 8
#define STORE_PG_OP_BUF_KEEP 65536 /* larger parameter buffers are not kept in the pool */
#define STORE_PG_OP_POOL_FREE 1024
#define STORE_PG_ROWS_KEEP (1024 * 1024) /* larger row arrays are freed after use */

#define STORE_PG_MAGIC 0x50475354u    /* "PGST" */
#define STORE_PG_OP_MAGIC 0x50474f50u /* "PGOP" */

/* Statement variants. Together with the namespace they identify one SQL
 * text; the store numbers the distinct texts and names them "q<n>". */
enum pg_variant {
	V_WRITE,
	V_STREAM_POS,
	V_STREAM_GPOS,
	V_LAST,
	V_LAST_TYPE,
	V_VERSION,
	V_CATEGORY, /* + CAT_* flags: 8 variants */
	V_STREAMS = V_CATEGORY + 8,
	V_CATEGORIES,
	V_IMPORT,
	V_CLEAR,
	/* registry-wide, namespace "" */
	V_NS_LIST,
	V_NS_INFO,
	V_NS_DELETE,
};
#define CAT_NAME 1
#define CAT_CORR 2
#define CAT_GROUP 4

/* How a result is turned into a reply. */
enum op_kind {
	OP_WRITE,
	OP_MSGS,
	OP_LAST,
	OP_VERSION,
	OP_NS_CREATE,
	OP_NS_DELETE,
	OP_NS_LIST,
	OP_NS_INFO,
	OP_STREAMS,
	OP_CATS,
	OP_IMPORT,
	OP_CLEAR,
};

struct pg_op {
	uint32_t magic;
	struct pg_op *next; /* queue link */
	enum op_kind kind;
	int stmt; /* statement index; -1 for ns_create (simple protocol) */
	int nparams;
	const char *values[STORE_PG_MAX_PARAMS];
	char *buf; /* owned copies of the parameters; kept across reuse */
	size_t bufcap;
	int64_t deadline_ms; /* queue wait bound */
	store_cb cb;
	void *arg;
	/* import: the caller's records (valid until the callback), to tell
	 * which one collided */
	const struct store_import_rec *recs;
	size_t nrecs;
};

struct pg_stmt {
	char *ns; /* "" for registry-wide statements */
	int variant;
	int nparams;
	uint32_t hash;
	char *sql;
};

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };
enum conn_phase { P_NONE, P_PREPARE, P_EXEC, P_CLEANUP };

struct store_pg;

struct pg_conn {
	struct store_pg *st;
	int idx;
	PGconn *pg;
	enum conn_state state;
	enum conn_phase phase;
	struct event *ev_io;    /* one-shot while connecting; persistent EV_READ once up */
	struct event *ev_wr;    /* EV_WRITE while PQflush has output left */
	struct event *ev_timer; /* reconnect backoff, connect timeout */
	bool flushing;
	bool was_up; /* has been connected before: the next success is a reconnect */
	bool quiet;  /* failure already logged at warn level */
	int backoff_ms;
	struct pg_op *op;  /* in flight */
	PGresult *res;     /* result kept for the reply */
	uint8_t *prepared; /* prepared[i]: statement i exists on this connection */
	size_t prepared_cap;
	void *rows; /* grow-only row structs handed to callbacks */
	size_t rows_cap;
	char errbuf[256];
};

struct store_pg {
	struct store base; /* first: struct store * is a struct store_pg * */
	uint32_t magic;
	struct event_base *evb;
	char *url;
	int npool;
	struct pg_conn *conns;
	int nup;             /* connections in CONNECTION_OK */
	bool connect_failed; /* the latest connect attempt failed */
	bool closed;
	int depth;
	struct pg_op *qhead, *qtail;
	size_t qlen;
	struct event *qtimer;
	struct pg_stmt *stmts;
	size_t nstmts, stmts_cap;
	int *slots; /* open addressing over stmts: index + 1, 0 = empty */
	size_t nslots;
	uint64_t ops, rejected, reconnects;
};

/* store_pg.c */
const char *store_pg_conn_errmsg(struct pg_conn *c, const char *msg);

/* store_pg_stmt.c: index of the statement (ns, variant), adding it on first
 * use; -1 when out of memory or ns cannot make a schema name. */
int store_pg_stmt_get(struct store_pg *st, const char *ns, int variant);
/* Grows every connection's prepared[] to cap entries; 0 or -1. */
int store_pg_stmt_grow_conns(struct store_pg *st, size_t cap);

/* store_pg_reply.c */
bool store_pg_is_error(const PGresult *r);
/* A successful result of op into rep (rows point into r and c->rows). */
void store_pg_reply_ok(struct pg_conn *c, struct pg_op *op, const PGresult *r, struct store_reply *rep);
/* A failed result; *stale is set when the statement's schema is gone. */
void store_pg_reply_error(struct pg_conn *c, struct pg_op *op, const PGresult *r, struct store_reply *rep,
                          bool *stale);

#endif
