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

struct stats;

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
/* Writes must work again within about a second of the database being
 * back: a reconnect a second per pooled connection is nothing to it. */
#define STORE_PG_BACKOFF_MAX_MS 1000
#endif
#define STORE_PG_MAX_PARAMS 8
#define STORE_PG_OP_BUF_KEEP 65536 /* larger parameter buffers are not kept in the pool */
#define STORE_PG_OP_POOL_FREE 1024
#define STORE_PG_ROWS_KEEP (1024 * 1024) /* larger row arrays are freed after use */
#define STORE_PG_SCAN_MAX 256 /* queue entries looked at to make one batch */
#define STORE_PG_WRITE_STALL_MS 20 /* writes in flight this long no longer keep others waiting */

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
	V_WRITE_BATCH,
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
	OP_BATCH, /* several OP_WRITEs in one statement (store_pg_batch.c) */
};

struct pg_op {
	uint32_t magic;
	struct pg_op *next; /* queue link */
	enum op_kind kind;
	int stmt; /* statement index; -1 for ns_create (simple protocol) */
	int nparams;
	const char *values[STORE_PG_MAX_PARAMS];
	const int *lengths; /* binary parameters (OP_BATCH): lens and formats, else NULL */
	const int *formats;
	int lens[STORE_PG_MAX_PARAMS];
	char *buf; /* owned copies of the parameters; kept across reuse */
	size_t bufcap;
	int64_t deadline_ms; /* queue wait bound */
	store_cb cb;
	void *arg;
	/* import: the caller's records (valid until the callback), to tell
	 * which one collided */
	const struct store_import_rec *recs;
	size_t nrecs;
	/* OP_WRITE: what batching needs to know */
	uint64_t catkey;  /* hash of the category, i.e. of the advisory lock it takes */
	size_t wbytes;    /* bytes of its strings */
	uint8_t uuid[16]; /* the id, binary */
	bool batchable;   /* the id parsed */
	bool solo;        /* written alone (what is left of a failed batch) */
	/* OP_BATCH: the writes it carries, in arrival order, linked by next */
	struct pg_op *members;
	int nmembers;
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
	struct pg_op *op;    /* in flight */
	struct pg_op *retry; /* a failed batch's writes still to write one by one */
	PGresult *res;       /* result kept for the reply */
	uint8_t *prepared; /* prepared[i]: statement i exists on this connection */
	size_t prepared_cap;
	void *rows; /* grow-only row structs handed to callbacks */
	size_t rows_cap;
	uint64_t *keys; /* categories (catkey) of the writes it is doing, held in st->held */
	size_t nkeys, keys_cap;
	bool write_slot; /* it counts in st->writing */
	int64_t write_since_ms;
	int64_t idle_since_ms;
	char errbuf[256];
};

/* Counting set of the categories some connection of the store is writing. */
struct pg_keyset {
	uint64_t *key; /* 0 = empty slot */
	uint32_t *count;
	size_t cap, used;
};

struct store_pg {
	struct store base; /* first: struct store * is a struct store_pg * */
	uint32_t magic;
	struct event_base *evb;
	char *url;
	int npool;
	struct pg_conn *conns;
	int nup;             /* connections in CONNECTION_OK */
	int nconnecting;     /* connections in C_CONNECTING */
	bool connect_failed; /* the latest connect attempt failed */
	int idle_ms;         /* extra connections close after this long idle */
	struct event *ev_sweep;
	struct event *ev_kick; /* a deferred dispatch and pool growth */
	bool kicking;
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
	/* write batching */
	int batch_max;
	size_t batch_bytes;
	int write_slots; /* connections that may write at once */
	int writing;     /* connections writing (a lone write or a batch) */
	bool room;       /* a write may take a connection (store_pg_write_room) */
	struct event *ev_stall;
	struct pg_keyset held;
	struct stats *stats;
};

/* The queue length into the worker's db_queue_waiting gauge. */
void store_pg_queue_gauge(struct store_pg *st);

/* store_pg.c */
const char *store_pg_conn_errmsg(struct pg_conn *c, const char *msg);
struct pg_op *store_pg_op_get(void);
void store_pg_op_put(struct pg_op *op);
/* Recycles op, then runs its callback with r. */
void store_pg_op_complete(struct pg_op *op, const struct store_reply *r);
void store_pg_op_fail(struct pg_op *op, enum store_status status, const char *msg);
void store_pg_queue_push_front(struct store_pg *st, struct pg_op *op);

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

/* store_pg_batch.c */
/* Takes the next operation to run off the queue: the first one not waiting
 * for a category another connection is writing, and when that is a write,
 * the queued writes of its namespace that can join it, as one OP_BATCH.
 * NULL when nothing can run now. */
struct pg_op *store_pg_take(struct store_pg *st);
/* op is a write that must wait: its category is being written, or every
 * write slot is taken. */
bool store_pg_held(const struct store_pg *st, const struct pg_op *op);
/* Something queued could run if there were a connection for it. */
bool store_pg_runnable(struct store_pg *st);
/* Works out st->room, which store_pg_held reads. */
void store_pg_write_room(struct store_pg *st);
/* c is about to run op: it holds op's categories until
 * store_pg_keys_release. */
void store_pg_keys_hold(struct pg_conn *c, const struct pg_op *op);
void store_pg_keys_release(struct pg_conn *c);
/* An operation that never reached the database back at the front of the
 * queue; a batch goes back as its writes, in order. */
void store_pg_requeue(struct store_pg *st, struct pg_op *op);
/* Fails op, or every write of a batch, and recycles it. */
void store_pg_fail_all(struct pg_op *op, enum store_status status, const char *msg);
/* The result r (NULL: none) of batch op on c: every write gets its own
 * reply, in order, or, when the statement failed, they are put on
 * c->retry to be written one by one. Recycles op. Returns the statement to
 * forget (its schema is gone), or -1. */
int store_pg_batch_done(struct pg_conn *c, struct pg_op *op, PGresult *r);
/* Fills the batch fields of a write that op_params has just copied. */
void store_pg_write_prepare(struct pg_op *op);
/* The counting set (exposed for the unit tests): add returns false when
 * out of memory, del of an absent key does nothing. */
bool store_pg_keyset_add(struct pg_keyset *ks, uint64_t key);
bool store_pg_keyset_has(const struct pg_keyset *ks, uint64_t key);
void store_pg_keyset_del(struct pg_keyset *ks, uint64_t key);
void store_pg_keyset_free(struct pg_keyset *ks);

#endif
