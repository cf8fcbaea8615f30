/*
 * The asynchronous SQLite store: struct store_ops for one worker process.
 *
 * SQLite calls block (disk I/O, and up to the busy timeout while another
 * process holds a write lock), so none of them runs on the event loop. Each
 * store owns one background thread, created in open() (after fork). Calls
 * copy their parameters into an operation and append it to a bounded,
 * mutex-protected queue; the thread runs operations in order, and the
 * results go onto a completion list. The thread wakes the loop through an
 * eventfd registered with the worker's event_base, and the callbacks run
 * there, on the event-loop thread only. An operation owns its reply rows
 * and their strings until its callback has returned.
 *
 * Database handles belong to the thread: the registry, and a small LRU
 * cache of namespace databases, each with its prepared statements. A
 * namespace deleted by another worker leaves its files open here until the
 * handle is dropped: whenever the shared namespace generation moves (every
 * create and delete bumps it), the thread drops the handles whose file is
 * no longer the one at their path; an idle thread with handles open looks
 * once a second, so a worker that gets no more requests lets go too.
 * Several processes share the files (WAL). Writers are serialized by
 * SQLite's write lock: stream.write reads the stream version and inserts
 * inside one BEGIN IMMEDIATE transaction, so expectedVersion is checked
 * under the lock that serializes writers (SPEC D19).
 *
 * Write batching (SPEC D24): when the thread takes a write, the writes of
 * the same namespace queued behind it (up to --write-batch-max and
 * --write-batch-bytes) join it in that one transaction, each written, or
 * answered with its conflict or duplicate id, exactly as it would be alone
 * (SQLite undoes a failed statement without ending the transaction). One
 * commit for all; if the transaction fails as a whole, each write is done
 * again alone. Nothing waits for company: a batch is what queued while the
 * thread was busy.
 *
 * Answers match the PostgreSQL store (store_pg.c, src/sql): same filters,
 * same order, byte-wise comparisons, microsecond times (SPEC D12, D18).
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "evlib.h"
#include "log.h"
#include "stats.h"
#include "store_sqlite.h"

#ifndef SQ_QUEUE_MAX
#define SQ_QUEUE_MAX 4096 /* waiting operations; beyond that calls return -1 (503) */
#endif
#define SQ_SCAN_MAX 256 /* queued operations looked at to make one write batch */
#ifndef SQ_MAX_HANDLES
#define SQ_MAX_HANDLES 32 /* namespace databases kept open per store */
#endif

#ifndef SQ_SWEEP_MS
#define SQ_SWEEP_MS 1000 /* an idle thread with namespace handles open looks for stale ones */
#endif

#define SQ_MAGIC 0x53514c54u    /* "SQLT" */
#define SQ_OP_MAGIC 0x53514f50u /* "SQOP" */

enum sq_kind {
	K_WRITE,
	K_STREAM,
	K_LAST,
	K_VERSION,
	K_CATEGORY,
	K_NS_CREATE,
	K_NS_DELETE,
	K_NS_LIST,
	K_NS_INFO,
	K_STREAMS,
	K_CATS,
	K_IMPORT,
	K_CLEAR,
};

#define SQ_NSTR 5

/*
 * One operation. Parameters per kind (s = strings, n = integers):
 *   write:     s id, stream, type, data, metadata; n0 expected; flag has_expected
 *   stream:    s0 stream; n0 from, n1 limit; flag by global position
 *   last:      s0 stream, s1 type (NULL = any)
 *   version:   s0 stream
 *   category:  s0 category, s1 correlation (NULL = none); n0 from, n1 limit, n2 member, n3 size
 *   ns_create: ns id; s0 token hash, s1 description; n0 created_at_us
 *   streams:   s0 prefix, s1 cursor; n0 limit
 *   import:    recs, nrecs (the caller's, not copied)
 */
struct sq_op {
	uint32_t magic;
	struct sq_op *next;
	enum sq_kind kind;
	store_cb cb;
	void *arg;
	const char *ns;
	const char *s[SQ_NSTR];
	size_t slen[SQ_NSTR];
	int64_t n[4];
	bool flag;
	size_t wbytes; /* write: bytes of its strings */
	/* write batches: the first op of one carries its size (a lone
	 * write: 1) and whether it had to be written one by one */
	int batch_n;
	bool batch_retry;
	const struct store_import_rec *recs;
	size_t nrecs;
	/* the outcome, filled by the thread */
	struct store_reply rep;
	bool oom;
	char err[256];
	void *rows; /* row structs handed to the callback */
	size_t rows_cap;
	char *arena; /* their strings */
	size_t arena_len, arena_cap;
	char *strs; /* the copied parameter strings */
	size_t strs_cap;
};

/* Statements of a namespace database. */
enum {
	Q_BEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_MAXPOS,
	Q_INSERT,
	Q_STREAM_POS,
	Q_STREAM_GPOS,
	Q_LAST,
	Q_LAST_TYPE,
	Q_STREAMS,
	Q_STREAMS_PREFIX,
	Q_CATS,
	Q_STATS,
	Q_COUNT,
	Q_IMPORT,
	Q_CLEAR,
	Q_CLEAR_SEQ,
	Q_CATEGORY, /* + CAT_* flags: 8 variants */
	Q_NSTMT = Q_CATEGORY + 8
};
#define CAT_NAME 1
#define CAT_CORR 2
#define CAT_GROUP 4

#define MSG_COLS "id, stream_name, type, position, global_position, data, metadata, time"

static const char *const q_sql[Q_CATEGORY] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_MAXPOS] = "SELECT max(position) FROM messages WHERE stream_name = ?1",
    [Q_INSERT] = "INSERT INTO messages (id, stream_name, type, position, data, metadata, time)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_STREAM_POS] = "SELECT " MSG_COLS " FROM messages WHERE stream_name = ?1 AND position >= ?2"
                     " ORDER BY position LIMIT ?3",
    [Q_STREAM_GPOS] = "SELECT " MSG_COLS " FROM messages WHERE stream_name = ?1 AND global_position >= ?2"
                      " ORDER BY position LIMIT ?3",
    [Q_LAST] = "SELECT " MSG_COLS " FROM messages WHERE stream_name = ?1 ORDER BY position DESC LIMIT 1",
    [Q_LAST_TYPE] = "SELECT " MSG_COLS " FROM messages WHERE stream_name = ?1 AND type = ?2"
                    " ORDER BY position DESC LIMIT 1",
    /* byte-wise keyset pagination: the columns use the default BINARY
     * collation (memcmp), so no COLLATE clause here, which would stop
     * the index from giving the order. A literal prefix p is the range
     * [p, p with its last byte + 1). */
    [Q_STREAMS] = "SELECT stream_name, max(position), max(time) FROM messages WHERE stream_name > ?1"
                  " GROUP BY stream_name ORDER BY stream_name LIMIT ?2",
    [Q_STREAMS_PREFIX] = "SELECT stream_name, max(position), max(time) FROM messages"
                         " WHERE stream_name > ?1 AND stream_name >= ?2 AND stream_name < ?3"
                         " GROUP BY stream_name ORDER BY stream_name LIMIT ?4",
    [Q_CATS] = "SELECT category, count(DISTINCT stream_name), count(*) FROM messages"
               " GROUP BY category ORDER BY category",
    [Q_STATS] = "SELECT count(*), count(DISTINCT stream_name), max(time) FROM messages",
    [Q_COUNT] = "SELECT count(*) FROM messages",
    /* An explicit global_position above the AUTOINCREMENT counter moves
     * sqlite_sequence up to it (and never down), so later writes continue
     * after the highest imported position. */
    [Q_IMPORT] = "INSERT INTO messages (id, stream_name, type, position, global_position, data, metadata, time)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_CLEAR] = "DELETE FROM messages",
    [Q_CLEAR_SEQ] = "DELETE FROM sqlite_sequence WHERE name = 'messages'",
};

/*
 * PostgreSQL's metadata->>'correlationStreamName': the string itself, the
 * JSON text of any other value, NULL for JSON null or a missing key.
 */
#define CORR_TEXT                                                                                                      \
	"CASE json_type(metadata, '$.correlationStreamName') WHEN 'null' THEN NULL"                                    \
	" WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"                                                           \
	" ELSE CAST(json_extract(metadata, '$.correlationStreamName') AS TEXT) END"

/* Registry statements. */
enum { R_BEGIN, R_COMMIT, R_ROLLBACK, R_INFO, R_LIST, R_EXISTS, R_DELETE, R_NSTMT };

static const char *const r_sql[R_NSTMT] = {
    [R_BEGIN] = "BEGIN IMMEDIATE",
    [R_COMMIT] = "COMMIT",
    [R_ROLLBACK] = "ROLLBACK",
    [R_INFO] = "SELECT id, description, " SQ_NS_CREATED_US " FROM namespaces WHERE id = ?1",
    [R_LIST] = "SELECT id, description, " SQ_NS_CREATED_US " FROM namespaces ORDER BY 3 DESC, id",
    [R_EXISTS] = "SELECT 1 FROM namespaces WHERE id = ?1",
    [R_DELETE] = "DELETE FROM namespaces WHERE id = ?1",
};

/* An open namespace database. */
struct sq_ns {
	char id[64];
	sqlite3 *db; /* NULL = free slot */
	dev_t dev;   /* the file it was opened on */
	ino_t ino;
	uint64_t used;
	sqlite3_stmt *q[Q_NSTMT];
};

struct sq_store {
	struct store base; /* first: struct store * is a struct sq_store * */
	uint32_t magic;
	struct event_base *evb;
	char *dir;
	char regpath[SQ_PATH_MAX];
	/* shared with the thread, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sq_op *in_head, *in_tail;
	size_t in_len;
	struct sq_op *done_head, *done_tail;
	bool stop;
	/* write batching, from the options */
	int batch_max;
	size_t batch_bytes;
	struct stats *stats; /* updated on the event loop only */
	/* the thread's own */
	pthread_t thr;
	sqlite3 *reg;
	sqlite3_stmt *rq[R_NSTMT];
	struct sq_ns ns[SQ_MAX_HANDLES];
	int nhandles;
	uint64_t tick;
	const volatile uint64_t *ns_gen; /* shared namespace generation, or NULL */
	uint64_t ns_gen_seen;
	/* written by the thread, read by connections() */
	atomic_int nconn;
	int efd;
	/* event loop only */
	struct event *ev;
	struct sq_op *deliver; /* completions being delivered */
	bool thr_started, closed;
	int depth;
};

static const struct store_ops sq_ops;

static struct sq_store *
sq_of(struct store *s)
{
	struct sq_store *st = (struct sq_store *)s;

	if (st == NULL || st->magic != SQ_MAGIC) {
		log_error("store_sqlite: bad store object");
		abort();
	}
	return st;
}

static enum store_status
busy_or_error(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? ST_UNAVAILABLE : ST_ERROR;
}

/* ---- operation results (background thread) ------------------------------ */

static void
op_status(struct sq_op *op, enum store_status status)
{
	op->rep.status = status;
	if (status != ST_OK && op->err[0] != '\0')
		op->rep.error = op->err;
}

/* Maps a failed SQLite call on db. A namespace database without the
 * messages table is no namespace (PostgreSQL: undefined table). */
static void
op_dberr(struct sq_op *op, sqlite3 *db, int rc)
{
	const char *msg = sqlite3_errmsg(db);
	enum store_status status = busy_or_error(rc);

	if ((rc & 0xff) == SQLITE_ERROR && strncmp(msg, "no such table", 13) == 0)
		status = ST_NS_NOT_FOUND;
	snprintf(op->err, sizeof(op->err), "%s", msg);
	op_status(op, status);
}

/* Row i of the reply array, growing it; NULL when out of memory. */
static void *
op_row(struct sq_op *op, size_t i, size_t size)
{
	if ((i + 1) * size > op->rows_cap) {
		size_t cap = op->rows_cap ? op->rows_cap * 2 : 16 * size;
		void *p;

		while (cap < (i + 1) * size)
			cap *= 2;
		p = realloc(op->rows, cap);
		if (p == NULL) {
			op->oom = true;
			return NULL;
		}
		op->rows = p;
		op->rows_cap = cap;
	}
	return (char *)op->rows + i * size;
}

/*
 * Column c as a string kept in the operation's arena. While rows are read
 * the arena may move, so this returns offset + 1 disguised as a pointer (0
 * for SQL NULL); arena_fix turns it into the real pointer at the end.
 */
static const char *
col_text(struct sq_op *op, sqlite3_stmt *q, int c, size_t *lenp)
{
	const unsigned char *p;
	size_t n, off;

	if (lenp != NULL)
		*lenp = 0;
	if (sqlite3_column_type(q, c) == SQLITE_NULL)
		return NULL;
	p = sqlite3_column_text(q, c);
	n = (size_t)sqlite3_column_bytes(q, c);
	if (p == NULL) {
		op->oom = true;
		return NULL;
	}
	if (op->arena_len + n + 1 > op->arena_cap) {
		size_t cap = op->arena_cap ? op->arena_cap * 2 : 4096;
		char *a;

		while (cap < op->arena_len + n + 1)
			cap *= 2;
		a = realloc(op->arena, cap);
		if (a == NULL) {
			op->oom = true;
			return NULL;
		}
		op->arena = a;
		op->arena_cap = cap;
	}
	off = op->arena_len;
	memcpy(op->arena + off, p, n);
	op->arena[off + n] = '\0';
	op->arena_len += n + 1;
	if (lenp != NULL)
		*lenp = n;
	return (const char *)(uintptr_t)(off + 1);
}

static const char *
arena_fix(const struct sq_op *op, const char *p)
{
	uintptr_t v = (uintptr_t)p;

	return v == 0 ? NULL : op->arena + (v - 1);
}

/* Reads message rows into the reply. SQLite result code (DONE on success). */
static int
read_msgs(struct sq_op *op, sqlite3_stmt *q)
{
	struct store_msg *m;
	size_t n = 0;
	int rc;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if ((m = op_row(op, n, sizeof(*m))) == NULL)
			return SQLITE_NOMEM;
		m->id = col_text(op, q, 0, NULL);
		m->stream = col_text(op, q, 1, &m->stream_len);
		m->type = col_text(op, q, 2, NULL);
		m->position = sqlite3_column_int64(q, 3);
		m->global_position = sqlite3_column_int64(q, 4);
		m->data = col_text(op, q, 5, NULL);
		m->metadata = col_text(op, q, 6, NULL);
		m->time_us = sqlite3_column_int64(q, 7);
		if (op->oom)
			return SQLITE_NOMEM;
		n++;
	}
	if (rc != SQLITE_DONE)
		return rc;
	m = op->rows;
	for (size_t i = 0; i < n; i++) {
		m[i].id = arena_fix(op, m[i].id);
		m[i].stream = arena_fix(op, m[i].stream);
		m[i].type = arena_fix(op, m[i].type);
		m[i].data = arena_fix(op, m[i].data);
		m[i].metadata = arena_fix(op, m[i].metadata);
	}
	op->rep.nrows = n;
	op->rep.msgs = m;
	return SQLITE_DONE;
}

static void
op_nomem(struct sq_op *op)
{
	snprintf(op->err, sizeof(op->err), "out of memory");
	op_status(op, ST_ERROR);
}

/* ---- handles (background thread) ---------------------------------------------- */

static void
q_done(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

static void
ns_drop(struct sq_store *st, struct sq_ns *h)
{
	for (int i = 0; i < Q_NSTMT; i++)
		if (h->q[i] != NULL)
			sqlite3_finalize(h->q[i]);
	sq_close(h->db);
	atomic_fetch_sub(&st->nconn, 1);
	st->nhandles--;
	memset(h, 0, sizeof(*h));
}

/*
 * The open database of namespace id. A cached handle is used only while the
 * file at its path is still the one it was opened on: another process may
 * have deleted the namespace (then it is gone) or deleted and created it
 * again (then it is reopened). A missing file is ST_NS_NOT_FOUND, as a
 * missing schema is on PostgreSQL.
 */
static enum store_status
ns_get(struct sq_store *st, const char *id, struct sq_ns **out, struct sq_op *op)
{
	char path[SQ_PATH_MAX];
	struct stat a, b;
	struct sq_ns *h = NULL;

	if (sq_ns_path(st->dir, id, path, sizeof(path)) < 0 || strcmp(path, st->regpath) == 0)
		return ST_NS_NOT_FOUND;
	for (int i = 0; i < SQ_MAX_HANDLES; i++) {
		if (st->ns[i].db != NULL && strcmp(st->ns[i].id, id) == 0) {
			h = &st->ns[i];
			break;
		}
	}
	if (h != NULL) {
		if (stat(path, &a) == 0 && a.st_dev == h->dev && a.st_ino == h->ino) {
			h->used = ++st->tick;
			*out = h;
			return ST_OK;
		}
		ns_drop(st, h);
	}
	/* a free slot, else the least recently used one */
	h = &st->ns[0];
	for (int i = 0; i < SQ_MAX_HANDLES && h->db != NULL; i++)
		if (st->ns[i].db == NULL || st->ns[i].used < h->used)
			h = &st->ns[i];
	if (h->db != NULL)
		ns_drop(st, h);
	for (int tries = 0; tries < 3; tries++) {
		sqlite3 *db;
		int rc;

		if (stat(path, &a) != 0) {
			if (errno == ENOENT)
				return ST_NS_NOT_FOUND;
			snprintf(op->err, sizeof(op->err), "%.200s: %s", path, strerror(errno));
			return ST_ERROR;
		}
		rc = sq_open(path, SQ_OPEN_NS, &db, op->err, sizeof(op->err));
		if (rc != SQLITE_OK) {
			if (stat(path, &b) != 0 && errno == ENOENT)
				return ST_NS_NOT_FOUND;
			return busy_or_error(rc);
		}
		atomic_fetch_add(&st->nconn, 1);
		/* opening reads the file and its WAL: if the name still points at
		 * the same file afterwards, that is the file we opened */
		if (stat(path, &b) != 0 || b.st_dev != a.st_dev || b.st_ino != a.st_ino) {
			sq_close(db);
			atomic_fetch_sub(&st->nconn, 1);
			continue;
		}
		snprintf(h->id, sizeof(h->id), "%s", id);
		h->db = db;
		st->nhandles++;
		h->dev = a.st_dev;
		h->ino = a.st_ino;
		h->used = ++st->tick;
		*out = h;
		return ST_OK;
	}
	return ST_NS_NOT_FOUND;
}

/* Still the file at the namespace's path? (see ns_get) */
static bool
ns_current(struct sq_store *st, struct sq_ns *h)
{
	char path[SQ_PATH_MAX];
	struct stat a;

	return sq_ns_path(st->dir, h->id, path, sizeof(path)) == 0 && stat(path, &a) == 0 && a.st_dev == h->dev &&
	       a.st_ino == h->ino;
}

/* Drops the handles of namespaces deleted (or deleted and created again)
 * since the last look, once the shared generation says something changed.
 * ns.delete removes the files before it bumps the generation, so a moved
 * generation always finds them gone. */
static void
ns_sweep(struct sq_store *st)
{
	uint64_t gen;

	if (st->ns_gen == NULL || st->nhandles == 0)
		return;
	gen = __atomic_load_n(st->ns_gen, __ATOMIC_ACQUIRE);
	if (gen == st->ns_gen_seen)
		return;
	st->ns_gen_seen = gen;
	for (int i = 0; i < SQ_MAX_HANDLES; i++)
		if (st->ns[i].db != NULL && !ns_current(st, &st->ns[i]))
			ns_drop(st, &st->ns[i]);
}

/* The category statement for flags f. */
static void
category_sql(int f, char *buf, size_t cap)
{
	size_t n;
	int k = 1;

	n = (size_t)snprintf(buf, cap, "SELECT " MSG_COLS " FROM messages WHERE ");
	/* category = ? AND global_position >= ? ORDER BY global_position is
	 * served by the (category, global_position) index alone */
	if (f & CAT_NAME)
		n += (size_t)snprintf(buf + n, cap - n, "category = ?%d AND ", k++);
	n += (size_t)snprintf(buf + n, cap - n, "global_position >= ?%d", k++);
	if (f & CAT_CORR)
		n += (size_t)snprintf(buf + n, cap - n, " AND sq_category(" CORR_TEXT ") = ?%d", k++);
	if (f & CAT_GROUP) {
		n += (size_t)snprintf(buf + n, cap - n, " AND sq_in_group(stream_name, ?%d, ?%d)", k, k + 1);
		k += 2;
	}
	snprintf(buf + n, cap - n, " ORDER BY global_position LIMIT ?%d", k);
}

/* *slot, prepared from sql on db at first use; NULL with op's status set.
 * The namespace handles and the registry keep their statements this way. */
static sqlite3_stmt *
cached_stmt(sqlite3 *db, sqlite3_stmt **slot, const char *sql, struct sq_op *op)
{
	int rc;

	if (*slot != NULL)
		return *slot;
	rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
	if (rc != SQLITE_OK) {
		op_dberr(op, db, rc);
		*slot = NULL;
	}
	return *slot;
}

/* Runs a statement without rows (BEGIN, COMMIT, ROLLBACK); 0 or -1 with
 * op's status set. */
static int
run_stmt(sqlite3 *db, sqlite3_stmt *q, struct sq_op *op)
{
	int rc;

	if (q == NULL)
		return -1;
	rc = sqlite3_step(q);
	if (rc != SQLITE_DONE)
		op_dberr(op, db, rc);
	sqlite3_reset(q);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Statement i of h, prepared on first use; NULL with op's status set. */
static sqlite3_stmt *
ns_stmt(struct sq_ns *h, int i, struct sq_op *op)
{
	char buf[1024];

	if (h->q[i] != NULL)
		return h->q[i];
	if (i < Q_CATEGORY)
		return cached_stmt(h->db, &h->q[i], q_sql[i], op);
	category_sql(i - Q_CATEGORY, buf, sizeof(buf));
	return cached_stmt(h->db, &h->q[i], buf, op);
}

static int
ns_run(struct sq_ns *h, int i, struct sq_op *op)
{
	return run_stmt(h->db, ns_stmt(h, i, op), op);
}

/* Ends an open transaction without changes (keeps op's status). */
static void
ns_rollback(struct sq_ns *h)
{
	struct sq_op scratch;

	if (!sqlite3_get_autocommit(h->db) && ns_run(h, Q_ROLLBACK, &scratch) != 0)
		log_warn("store_sqlite: rollback failed: %s", scratch.err);
}

static enum store_status
reg_get(struct sq_store *st, struct sq_op *op)
{
	if (st->reg != NULL)
		return ST_OK;
	if (sq_open(st->regpath, 0, &st->reg, op->err, sizeof(op->err)) != SQLITE_OK)
		return ST_UNAVAILABLE;
	atomic_fetch_add(&st->nconn, 1);
	return ST_OK;
}

static sqlite3_stmt *
reg_stmt(struct sq_store *st, int i, struct sq_op *op)
{
	return cached_stmt(st->reg, &st->rq[i], r_sql[i], op);
}

static int
reg_run(struct sq_store *st, int i, struct sq_op *op)
{
	return run_stmt(st->reg, reg_stmt(st, i, op), op);
}

static void
reg_rollback(struct sq_store *st)
{
	struct sq_op scratch;

	if (!sqlite3_get_autocommit(st->reg) && reg_run(st, R_ROLLBACK, &scratch) != 0)
		log_warn("store_sqlite: registry rollback failed: %s", scratch.err);
}

static void
close_all(struct sq_store *st)
{
	for (int i = 0; i < SQ_MAX_HANDLES; i++)
		if (st->ns[i].db != NULL)
			ns_drop(st, &st->ns[i]);
	for (int i = 0; i < R_NSTMT; i++)
		if (st->rq[i] != NULL)
			sqlite3_finalize(st->rq[i]);
	memset(st->rq, 0, sizeof(st->rq));
	if (st->reg != NULL) {
		sq_close(st->reg);
		st->reg = NULL;
		atomic_fetch_sub(&st->nconn, 1);
	}
}

/* ---- operations (background thread) ----------------------------------------------- */

/*
 * stream.write inside the transaction open on h: reads the stream's
 * version (which sees the writes made earlier in the same transaction),
 * checks expectedVersion, inserts. Returns 0 with op's outcome set
 * (written, a conflict or a duplicate id: the transaction can go on, a
 * failed statement is undone on its own), or -1 when the transaction has
 * to be rolled back (op's status says why).
 */
static int
write_one(struct sq_ns *h, struct sq_op *op)
{
	sqlite3_stmt *q;
	int64_t v = -1;
	int rc;

	if ((q = ns_stmt(h, Q_MAXPOS, op)) == NULL)
		return -1;
	sqlite3_bind_text(q, 1, op->s[1], (int)op->slen[1], SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(q, 0);
	if (rc != SQLITE_ROW)
		op_dberr(op, h->db, rc);
	q_done(q);
	if (rc != SQLITE_ROW)
		return -1;
	if (op->flag && op->n[0] != v) {
		op->rep.actual_version = v;
		op_status(op, ST_CONFLICT);
		return 0;
	}
	if ((q = ns_stmt(h, Q_INSERT, op)) == NULL)
		return -1;
	sqlite3_bind_text(q, 1, op->s[0], (int)op->slen[0], SQLITE_STATIC);
	sqlite3_bind_text(q, 2, op->s[1], (int)op->slen[1], SQLITE_STATIC);
	sqlite3_bind_text(q, 3, op->s[2], (int)op->slen[2], SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, v + 1);
	sqlite3_bind_text(q, 5, op->s[3], (int)op->slen[3], SQLITE_STATIC);
	if (op->s[4] != NULL)
		sqlite3_bind_text(q, 6, op->s[4], (int)op->slen[4], SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 6);
	sqlite3_bind_int64(q, 7, now_unix_us());
	rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		op->rep.position = v + 1;
		op->rep.global_position = sqlite3_last_insert_rowid(h->db);
		op_status(op, ST_OK);
	} else if (rc == SQLITE_CONSTRAINT_UNIQUE && strstr(sqlite3_errmsg(h->db), "messages.id") != NULL &&
	           !sqlite3_get_autocommit(h->db)) {
		/* (stream_name, position) cannot collide under the lock */
		snprintf(op->err, sizeof(op->err), "%s", sqlite3_errmsg(h->db));
		op_status(op, ST_MSG_EXISTS);
		rc = SQLITE_DONE;
	} else {
		op_dberr(op, h->db, rc);
	}
	q_done(q);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The first op's outcome for every other op of the list: for what is about
 * the namespace or the lock, not one message. */
static void
same_outcome(struct sq_op *list)
{
	for (struct sq_op *op = list->next; op != NULL; op = op->next) {
		snprintf(op->err, sizeof(op->err), "%s", list->err);
		op_status(op, list->rep.status);
	}
}

/*
 * One attempt of the writes list (one, or a batch of one namespace, linked
 * by next) in one transaction. Returns 1 when the namespace's file changed
 * under us (try again with a fresh handle), -1 when the transaction failed
 * as a whole (nothing is written; each op's outcome is unset), else 0 with
 * every op's outcome set.
 */
static int
write_attempt(struct sq_store *st, struct sq_op *list)
{
	enum store_status status;
	struct sq_ns *h;

	if ((status = ns_get(st, list->ns, &h, list)) != ST_OK) {
		op_status(list, status);
		same_outcome(list);
		return 0;
	}
	if (ns_run(h, Q_BEGIN, list) != 0) {
		same_outcome(list);
		return 0;
	}
	/*
	 * We hold the write lock now. ns.delete removes the files while
	 * holding it, so a namespace deleted (or deleted and created again)
	 * since ns_get looked shows here as a different file.
	 */
	if (!ns_current(st, h)) {
		ns_rollback(h);
		ns_drop(st, h);
		return 1;
	}
	for (struct sq_op *op = list; op != NULL; op = op->next) {
		if (write_one(h, op) != 0) {
			ns_rollback(h);
			return list->next != NULL ? -1 : 0;
		}
	}
	/* a lone write that wrote nothing has nothing to commit */
	if (list->next == NULL && list->rep.status != ST_OK) {
		ns_rollback(h);
		return 0;
	}
	if (ns_run(h, Q_COMMIT, list) != 0) {
		ns_rollback(h);
		if (list->next != NULL)
			return -1;
		return 0;
	}
	return 0;
}

static void
exec_write(struct sq_store *st, struct sq_op *op)
{
	int rc = 1;

	for (int attempt = 0; attempt < 2 && rc == 1; attempt++)
		rc = write_attempt(st, op);
	if (rc == 1)
		op_status(op, ST_NS_NOT_FOUND);
	op->batch_n = op->rep.status == ST_OK || op->rep.status == ST_CONFLICT || op->rep.status == ST_MSG_EXISTS;
}

static void exec_op(struct sq_store *st, struct sq_op *op);

/* An outcome's error text: none on success, always one otherwise. */
static void
op_final(struct sq_op *op)
{
	if (op->rep.status != ST_OK && op->rep.error == NULL)
		op->rep.error = op->err[0] != '\0' ? op->err : "database error";
	if (op->rep.status == ST_OK)
		op->rep.error = NULL;
}

/*
 * Writes of one namespace in one transaction, each with its own outcome
 * (SPEC D24): exactly the answers they would have had one after the other,
 * with one commit. When the transaction fails as a whole, or the
 * namespace's file keeps changing, each is written again alone.
 */
static void
exec_write_batch(struct sq_store *st, struct sq_op *list)
{
	int rc = 1, n = 0;

	for (struct sq_op *op = list; op != NULL; op = op->next)
		n++;
	for (int attempt = 0; attempt < 2 && rc == 1; attempt++) {
		for (struct sq_op *op = list; op != NULL; op = op->next) {
			op->rep.status = ST_ERROR;
			op->rep.error = NULL;
			op->err[0] = '\0';
		}
		rc = write_attempt(st, list);
	}
	if (rc == 0) {
		list->batch_n = n;
		for (struct sq_op *op = list; op != NULL; op = op->next)
			op_final(op);
		return;
	}
	list->batch_retry = true;
	for (struct sq_op *op = list; op != NULL; op = op->next) {
		struct sq_op *next = op->next;

		op->next = NULL;
		memset(&op->rep, 0, sizeof(op->rep));
		exec_op(st, op);
		op->next = next;
	}
}

/* A statement of namespace ns read into message rows. */
static void
exec_msgs(struct sq_store *st, struct sq_op *op, int stmt, void (*bind)(sqlite3_stmt *, const struct sq_op *))
{
	enum store_status status;
	struct sq_ns *h;
	sqlite3_stmt *q;
	int rc;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK)
		return op_status(op, status);
	if ((q = ns_stmt(h, stmt, op)) == NULL)
		return;
	bind(q, op);
	rc = read_msgs(op, q);
	if (rc == SQLITE_DONE)
		op_status(op, ST_OK);
	else if (rc == SQLITE_NOMEM && op->oom)
		op_nomem(op);
	else
		op_dberr(op, h->db, rc);
	q_done(q);
}

static void
bind_stream(sqlite3_stmt *q, const struct sq_op *op)
{
	sqlite3_bind_text(q, 1, op->s[0], (int)op->slen[0], SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, op->n[0]);
	/* a negative LIMIT is no limit in SQLite, as NULL is in PostgreSQL */
	sqlite3_bind_int64(q, 3, op->n[1] < 0 ? -1 : op->n[1]);
}

static void
bind_last(sqlite3_stmt *q, const struct sq_op *op)
{
	sqlite3_bind_text(q, 1, op->s[0], (int)op->slen[0], SQLITE_STATIC);
	if (op->s[1] != NULL)
		sqlite3_bind_text(q, 2, op->s[1], (int)op->slen[1], SQLITE_STATIC);
}

static int
category_flags(const struct sq_op *op)
{
	return (op->slen[0] > 0 ? CAT_NAME : 0) | (op->s[1] != NULL ? CAT_CORR : 0) | (op->n[3] > 0 ? CAT_GROUP : 0);
}

static void
bind_category(sqlite3_stmt *q, const struct sq_op *op)
{
	int f = category_flags(op), k = 1;

	if (f & CAT_NAME)
		sqlite3_bind_text(q, k++, op->s[0], (int)op->slen[0], SQLITE_STATIC);
	sqlite3_bind_int64(q, k++, op->n[0]);
	if (f & CAT_CORR)
		sqlite3_bind_text(q, k++, op->s[1], (int)op->slen[1], SQLITE_STATIC);
	if (f & CAT_GROUP) {
		sqlite3_bind_int64(q, k++, op->n[2]);
		sqlite3_bind_int64(q, k++, op->n[3]);
	}
	sqlite3_bind_int64(q, k, op->n[1] < 0 ? -1 : op->n[1]);
}

static void
exec_version(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct sq_ns *h;
	sqlite3_stmt *q;
	int rc;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK)
		return op_status(op, status);
	if ((q = ns_stmt(h, Q_MAXPOS, op)) == NULL)
		return;
	sqlite3_bind_text(q, 1, op->s[0], (int)op->slen[0], SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		op->rep.has_value = sqlite3_column_type(q, 0) != SQLITE_NULL;
		op->rep.value = sqlite3_column_int64(q, 0);
		op_status(op, ST_OK);
	} else {
		op_dberr(op, h->db, rc);
	}
	q_done(q);
}

static void
exec_streams(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct store_stream_row *r;
	struct sq_ns *h;
	sqlite3_stmt *q;
	char *upper = NULL;
	size_t n = 0, ulen = op->slen[0];
	int rc;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK)
		return op_status(op, status);
	if (ulen > 0) {
		/* the smallest string above every string with this prefix: the
		 * prefix with its last byte incremented (0xff bytes, which valid
		 * UTF-8 never has, are carried) */
		if ((upper = malloc(ulen)) == NULL)
			return op_nomem(op);
		memcpy(upper, op->s[0], ulen);
		while (ulen > 0 && (unsigned char)upper[ulen - 1] == 0xff)
			ulen--;
		if (ulen == 0) {
			/* no stored (UTF-8) name can start with it */
			free(upper);
			return op_status(op, ST_OK);
		}
		upper[ulen - 1] = (char)((unsigned char)upper[ulen - 1] + 1);
	}
	if ((q = ns_stmt(h, upper != NULL ? Q_STREAMS_PREFIX : Q_STREAMS, op)) == NULL) {
		free(upper);
		return;
	}
	sqlite3_bind_text(q, 1, op->s[1], (int)op->slen[1], SQLITE_STATIC);
	if (upper != NULL) {
		sqlite3_bind_text(q, 2, op->s[0], (int)op->slen[0], SQLITE_STATIC);
		sqlite3_bind_text(q, 3, upper, (int)ulen, SQLITE_STATIC);
		sqlite3_bind_int64(q, 4, op->n[0]);
	} else {
		sqlite3_bind_int64(q, 2, op->n[0]);
	}
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if ((r = op_row(op, n, sizeof(*r))) == NULL)
			break;
		r->stream = col_text(op, q, 0, NULL);
		r->version = sqlite3_column_int64(q, 1);
		r->last_activity_us = sqlite3_column_int64(q, 2);
		if (op->oom)
			break;
		n++;
	}
	if (op->oom) {
		op_nomem(op);
	} else if (rc != SQLITE_DONE) {
		op_dberr(op, h->db, rc);
	} else {
		r = op->rows;
		for (size_t i = 0; i < n; i++)
			r[i].stream = arena_fix(op, r[i].stream);
		op->rep.nrows = n;
		op->rep.streams = r;
		op_status(op, ST_OK);
	}
	q_done(q);
	free(upper);
}

static void
exec_cats(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct store_cat_row *r;
	struct sq_ns *h;
	sqlite3_stmt *q;
	size_t n = 0;
	int rc;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK)
		return op_status(op, status);
	if ((q = ns_stmt(h, Q_CATS, op)) == NULL)
		return;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if ((r = op_row(op, n, sizeof(*r))) == NULL)
			break;
		r->category = col_text(op, q, 0, NULL);
		r->stream_count = sqlite3_column_int64(q, 1);
		r->message_count = sqlite3_column_int64(q, 2);
		if (op->oom)
			break;
		n++;
	}
	if (op->oom) {
		op_nomem(op);
	} else if (rc != SQLITE_DONE) {
		op_dberr(op, h->db, rc);
	} else {
		r = op->rows;
		for (size_t i = 0; i < n; i++)
			r[i].category = arena_fix(op, r[i].category);
		op->rep.nrows = n;
		op->rep.cats = r;
		op_status(op, ST_OK);
	}
	q_done(q);
}

/*
 * Figures of namespace id for ns.list (count only) and ns.info. Missing
 * storage counts as empty, as on PostgreSQL (namespace_stats).
 */
static enum store_status
ns_figures(struct sq_store *st, const char *id, struct store_ns_row *row, bool all, struct sq_op *op)
{
	enum store_status status;
	struct sq_ns *h;
	sqlite3_stmt *q;
	int rc;

	row->message_count = row->stream_count = 0;
	row->has_last_activity = false;
	status = ns_get(st, id, &h, op);
	if (status == ST_NS_NOT_FOUND)
		return ST_OK;
	if (status != ST_OK)
		return status;
	if ((q = ns_stmt(h, all ? Q_STATS : Q_COUNT, op)) == NULL)
		return op->rep.status == ST_NS_NOT_FOUND ? ST_OK : op->rep.status;
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		row->message_count = sqlite3_column_int64(q, 0);
		if (all) {
			row->stream_count = sqlite3_column_int64(q, 1);
			row->has_last_activity = sqlite3_column_type(q, 2) != SQLITE_NULL;
			row->last_activity_us = sqlite3_column_int64(q, 2);
		}
		status = ST_OK;
	} else {
		op_dberr(op, h->db, rc);
		status = op->rep.status == ST_NS_NOT_FOUND ? ST_OK : op->rep.status;
	}
	q_done(q);
	return status;
}

/* ns.info (one id) or ns.list (every namespace, newest first). */
static void
exec_ns_rows(struct sq_store *st, struct sq_op *op, bool info)
{
	enum store_status status;
	struct store_ns_row *r;
	sqlite3_stmt *q;
	size_t n = 0;
	int rc;

	if ((status = reg_get(st, op)) != ST_OK)
		return op_status(op, status);
	if ((q = reg_stmt(st, info ? R_INFO : R_LIST, op)) == NULL)
		return;
	if (info)
		sqlite3_bind_text(q, 1, op->ns, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if ((r = op_row(op, n, sizeof(*r))) == NULL)
			break;
		memset(r, 0, sizeof(*r));
		r->id = col_text(op, q, 0, NULL);
		r->description = col_text(op, q, 1, NULL);
		r->created_at_us = sqlite3_column_int64(q, 2);
		if (op->oom)
			break;
		n++;
	}
	if (rc != SQLITE_DONE && !op->oom)
		op_dberr(op, st->reg, rc);
	q_done(q);
	if (op->oom)
		return op_nomem(op);
	if (rc != SQLITE_DONE)
		return;
	if (info && n == 0)
		return op_status(op, ST_NS_NOT_FOUND);
	r = op->rows;
	for (size_t i = 0; i < n; i++) {
		r[i].id = arena_fix(op, r[i].id);
		/* NULL reads as "" on PostgreSQL too */
		r[i].description = r[i].description != NULL ? arena_fix(op, r[i].description) : "";
		/* the arena no longer grows: these pointers stay valid */
		if ((status = ns_figures(st, r[i].id, &r[i], info, op)) != ST_OK)
			return op_status(op, status);
	}
	op->rep.nrows = n;
	op->rep.nss = r;
	op->rep.error = NULL;
	op_status(op, ST_OK);
}

static void
exec_ns_create(struct sq_store *st, struct sq_op *op)
{
	struct store_ns_create_req q;
	enum store_status status;

	if ((status = reg_get(st, op)) != ST_OK)
		return op_status(op, status);
	memset(&q, 0, sizeof(q));
	q.id = op->ns;
	q.token_hash = op->s[0];
	q.description = op->s[1];
	q.created_at_us = op->n[0];
	status = sq_ns_register(st->reg, st->dir, &q, op->err, sizeof(op->err));
	op_status(op, status);
}

/*
 * ns.delete: under the registry's write lock, and the namespace's own so
 * that no write can commit between the count and the removal. The files go
 * before the registry row: a crash in between leaves a row without storage,
 * which a second ns.delete removes.
 */
static void
exec_ns_delete(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct sq_ns *h = NULL;
	sqlite3_stmt *q;
	int64_t count = 0;
	int rc;

	if ((status = reg_get(st, op)) != ST_OK)
		return op_status(op, status);
	if (reg_run(st, R_BEGIN, op) != 0)
		return;
	if ((q = reg_stmt(st, R_EXISTS, op)) == NULL)
		goto rollback;
	sqlite3_bind_text(q, 1, op->ns, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		op_dberr(op, st->reg, rc);
	q_done(q);
	if (rc == SQLITE_DONE)
		op_status(op, ST_NS_NOT_FOUND);
	if (rc != SQLITE_ROW)
		goto rollback;
	status = ns_get(st, op->ns, &h, op);
	if (status == ST_OK) {
		if (ns_run(h, Q_BEGIN, op) != 0)
			goto rollback;
		if ((q = ns_stmt(h, Q_COUNT, op)) != NULL) {
			rc = sqlite3_step(q);
			if (rc == SQLITE_ROW)
				count = sqlite3_column_int64(q, 0);
			else
				op_dberr(op, h->db, rc);
			q_done(q);
		} else {
			rc = SQLITE_ERROR;
		}
		/* storage without the table counts as empty */
		if (rc != SQLITE_ROW && op->rep.status != ST_NS_NOT_FOUND)
			goto rollback;
	} else if (status != ST_NS_NOT_FOUND) {
		op_status(op, status);
		goto rollback;
	}
	op->err[0] = '\0';
	if (sq_ns_storage_remove(st->dir, op->ns, op->err, sizeof(op->err)) != 0) {
		op_status(op, ST_ERROR);
		goto rollback;
	}
	if (h != NULL) {
		ns_rollback(h);
		ns_drop(st, h);
		h = NULL;
	}
	if ((q = reg_stmt(st, R_DELETE, op)) == NULL)
		goto rollback;
	sqlite3_bind_text(q, 1, op->ns, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc != SQLITE_DONE)
		op_dberr(op, st->reg, rc);
	q_done(q);
	if (rc != SQLITE_DONE || reg_run(st, R_COMMIT, op) != 0)
		goto rollback;
	op->rep.has_value = true;
	op->rep.value = count;
	op->rep.error = NULL;
	op_status(op, ST_OK);
	return;
rollback:
	if (h != NULL)
		ns_rollback(h);
	reg_rollback(st);
}

/*
 * One import batch in one transaction (see write_attempt for the file
 * check). A unique index hit (global position, id, stream position) is
 * ST_POS_EXISTS with the global position of that record.
 */
static int
import_attempt(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct sq_ns *h;
	sqlite3_stmt *q;
	int rc = SQLITE_DONE;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK) {
		op_status(op, status);
		return 0;
	}
	if (ns_run(h, Q_BEGIN, op) != 0)
		return 0;
	if (!ns_current(st, h)) {
		ns_rollback(h);
		ns_drop(st, h);
		return 1;
	}
	if ((q = ns_stmt(h, Q_IMPORT, op)) == NULL)
		goto rollback;
	for (size_t i = 0; i < op->nrecs && rc == SQLITE_DONE; i++) {
		const struct store_import_rec *r = &op->recs[i];

		sqlite3_bind_text(q, 1, r->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, r->stream, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, r->type, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 4, r->position);
		sqlite3_bind_int64(q, 5, r->global_position);
		if (r->data != NULL)
			sqlite3_bind_text(q, 6, r->data, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(q, 6);
		if (r->metadata != NULL)
			sqlite3_bind_text(q, 7, r->metadata, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(q, 7);
		sqlite3_bind_int64(q, 8, r->time_us);
		rc = sqlite3_step(q);
		if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
			snprintf(op->err, sizeof(op->err), "%s", sqlite3_errmsg(h->db));
			op->rep.has_value = true;
			op->rep.value = r->global_position;
			op_status(op, ST_POS_EXISTS);
		} else if (rc != SQLITE_DONE) {
			op_dberr(op, h->db, rc);
		}
		q_done(q);
	}
	if (rc != SQLITE_DONE || ns_run(h, Q_COMMIT, op) != 0)
		goto rollback;
	op_status(op, ST_OK);
	return 0;
rollback:
	ns_rollback(h);
	return 0;
}

/* ?force=true: every message and the AUTOINCREMENT counter, in one transaction. */
static int
clear_attempt(struct sq_store *st, struct sq_op *op)
{
	enum store_status status;
	struct sq_ns *h;

	if ((status = ns_get(st, op->ns, &h, op)) != ST_OK) {
		op_status(op, status);
		return 0;
	}
	if (ns_run(h, Q_BEGIN, op) != 0)
		return 0;
	if (!ns_current(st, h)) {
		ns_rollback(h);
		ns_drop(st, h);
		return 1;
	}
	if (ns_run(h, Q_CLEAR, op) != 0 || ns_run(h, Q_CLEAR_SEQ, op) != 0 || ns_run(h, Q_COMMIT, op) != 0) {
		ns_rollback(h);
		return 0;
	}
	op_status(op, ST_OK);
	return 0;
}

static void
exec_retrying(struct sq_store *st, struct sq_op *op, int (*attempt)(struct sq_store *, struct sq_op *))
{
	for (int i = 0; i < 2; i++)
		if (attempt(st, op) == 0)
			return;
	op_status(op, ST_NS_NOT_FOUND);
}

static void
exec_op(struct sq_store *st, struct sq_op *op)
{
	/* every path sets the status; ST_ERROR is the safety net */
	op->rep.status = ST_ERROR;
	op->rep.error = NULL;
	op->err[0] = '\0';
	switch (op->kind) {
	case K_WRITE:
		exec_write(st, op);
		break;
	case K_STREAM:
		exec_msgs(st, op, op->flag ? Q_STREAM_GPOS : Q_STREAM_POS, bind_stream);
		break;
	case K_LAST:
		exec_msgs(st, op, op->s[1] != NULL ? Q_LAST_TYPE : Q_LAST, bind_last);
		break;
	case K_VERSION:
		exec_version(st, op);
		break;
	case K_CATEGORY:
		exec_msgs(st, op, Q_CATEGORY + category_flags(op), bind_category);
		break;
	case K_NS_CREATE:
		exec_ns_create(st, op);
		break;
	case K_NS_DELETE:
		exec_ns_delete(st, op);
		break;
	case K_NS_LIST:
		exec_ns_rows(st, op, false);
		break;
	case K_NS_INFO:
		exec_ns_rows(st, op, true);
		break;
	case K_STREAMS:
		exec_streams(st, op);
		break;
	case K_CATS:
		exec_cats(st, op);
		break;
	case K_IMPORT:
		exec_retrying(st, op, import_attempt);
		break;
	case K_CLEAR:
		exec_retrying(st, op, clear_attempt);
		break;
	}
	op_final(op);
}

/* ---- the background thread ------------------------------------------------------ */

/*
 * Under st->mu: moves the queued writes of head's namespace behind head
 * (linked by next), up to the caps, so they share its transaction. Nothing
 * waits for company: this is what queued while the thread was busy. Writes
 * stay in arrival order; the first one that does not fit ends the batch,
 * so no write of a stream can overtake an earlier one.
 */
static void
take_writes(struct sq_store *st, struct sq_op *head)
{
	struct sq_op *prev = NULL, *op, *next, **tail = &head->next;
	size_t bytes = head->wbytes;
	int n = 1, scanned = 0;

	for (op = st->in_head; op != NULL && n < st->batch_max && scanned++ < SQ_SCAN_MAX; op = next) {
		next = op->next;
		if (op->kind != K_WRITE || strcmp(op->ns, head->ns) != 0) {
			prev = op;
			continue;
		}
		if (bytes + op->wbytes > st->batch_bytes)
			break;
		if (prev != NULL)
			prev->next = next;
		else
			st->in_head = next;
		if (st->in_tail == op)
			st->in_tail = prev;
		st->in_len--;
		op->next = NULL;
		*tail = op;
		tail = &op->next;
		bytes += op->wbytes;
		n++;
	}
}

static void *
sq_thread(void *arg)
{
	struct sq_store *st = arg;
	struct sq_op probe;

	/* the registry at once, so connections() reports a live store (as the
	 * PostgreSQL pool does) before the first request; a failure here is
	 * retried by the first operation that needs it */
	memset(&probe, 0, sizeof(probe));
	if (reg_get(st, &probe) != ST_OK)
		log_warn("store_sqlite: %s", probe.err);
	for (;;) {
		struct sq_op *op, *last;
		bool wake;

		ns_sweep(st);
		pthread_mutex_lock(&st->mu);
		if (!st->stop && st->in_head == NULL && st->nhandles > 0 && st->ns_gen != NULL) {
			/* idle with handles open: wake up to look at them again */
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += SQ_SWEEP_MS / 1000;
			ts.tv_nsec += (SQ_SWEEP_MS % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&st->cv, &st->mu, &ts);
		}
		while (!st->stop && st->in_head == NULL && (st->nhandles == 0 || st->ns_gen == NULL))
			pthread_cond_wait(&st->cv, &st->mu);
		if (st->stop) {
			pthread_mutex_unlock(&st->mu);
			break;
		}
		if (st->in_head == NULL) {
			pthread_mutex_unlock(&st->mu);
			continue;
		}
		op = st->in_head;
		st->in_head = op->next;
		if (st->in_head == NULL)
			st->in_tail = NULL;
		st->in_len--;
		op->next = NULL;
		if (op->kind == K_WRITE && st->batch_max > 1)
			take_writes(st, op);
		/* the gauge is only ever written under mu */
		if (st->stats != NULL)
			st->stats->db_queue_waiting = st->in_len;
		pthread_mutex_unlock(&st->mu);

		if (op->next != NULL)
			exec_write_batch(st, op);
		else
			exec_op(st, op);
		for (last = op; last->next != NULL; last = last->next)
			;

		pthread_mutex_lock(&st->mu);
		/* one wake-up per batch: the loop takes the whole list */
		wake = st->done_head == NULL;
		if (st->done_tail != NULL)
			st->done_tail->next = op;
		else
			st->done_head = op;
		st->done_tail = last;
		pthread_mutex_unlock(&st->mu);
		if (wake) {
			uint64_t one = 1;

			if (write(st->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
				log_error("store_sqlite: cannot wake the event loop: %s", strerror(errno));
		}
	}
	close_all(st);
	return NULL;
}

/* ---- the event-loop side -------------------------------------------------------- */

/*
 * Spare operations with their buffers (rows, arena, strings), so that an
 * operation in steady state allocates nothing. Only the event-loop thread
 * takes and returns operations (the store's thread never does), so the list
 * needs no lock. Buffers that grew past SQ_KEEP_BYTES go back to malloc.
 */
#define SQ_SPARE_MAX 64
#define SQ_KEEP_BYTES (64 * 1024)
static struct sq_op *spare;
static unsigned nspare;

static void
op_free(struct sq_op *op)
{
	if (op->magic != SQ_OP_MAGIC) {
		log_error("store_sqlite: bad operation object");
		abort();
	}
	op->magic = 0;
	if (op->rows_cap > SQ_KEEP_BYTES) {
		free(op->rows);
		op->rows = NULL;
		op->rows_cap = 0;
	}
	if (op->arena_cap > SQ_KEEP_BYTES) {
		free(op->arena);
		op->arena = NULL;
		op->arena_cap = 0;
	}
	if (op->strs_cap > SQ_KEEP_BYTES) {
		free(op->strs);
		op->strs = NULL;
		op->strs_cap = 0;
	}
	if (nspare < SQ_SPARE_MAX) {
		op->next = spare;
		spare = op;
		nspare++;
		return;
	}
	free(op->rows);
	free(op->arena);
	free(op->strs);
	free(op);
}

/* A cleared operation, a spare one when there is one (its buffers kept). */
static struct sq_op *
op_take(void)
{
	struct sq_op *op = spare, keep;

	if (op == NULL)
		return calloc(1, sizeof(*op));
	spare = op->next;
	nspare--;
	keep = *op;
	memset(op, 0, sizeof(*op));
	op->rows = keep.rows;
	op->rows_cap = keep.rows_cap;
	op->arena = keep.arena;
	op->arena_cap = keep.arena_cap;
	op->strs = keep.strs;
	op->strs_cap = keep.strs_cap;
	return op;
}

/* Runs the callback, then releases what the reply pointed to. */
static void
op_finish(struct sq_store *st, struct sq_op *op)
{
	if (op->batch_n > 0)
		stats_write_batch(st->stats, (uint64_t)op->batch_n);
	if (op->batch_retry && st->stats != NULL)
		st->stats->write_batch_retries++;
	op->cb(&op->rep, op->arg);
	op_free(op);
}

static void
store_free(struct sq_store *st)
{
	if (st->ev != NULL)
		event_free(st->ev);
	if (st->efd >= 0)
		close(st->efd);
	pthread_cond_destroy(&st->cv);
	pthread_mutex_destroy(&st->mu);
	free(st->dir);
	st->magic = 0;
	free(st);
}

static void
enter(struct sq_store *st)
{
	st->depth++;
}

static void
leave(struct sq_store *st)
{
	if (--st->depth == 0 && st->closed)
		store_free(st);
}

/* Moves finished operations to the delivery list. */
static void
take_done(struct sq_store *st)
{
	struct sq_op *list, **tail = &st->deliver;

	pthread_mutex_lock(&st->mu);
	list = st->done_head;
	st->done_head = st->done_tail = NULL;
	if (st->stats != NULL)
		st->stats->db_queue_waiting = st->in_len;
	pthread_mutex_unlock(&st->mu);
	while (*tail != NULL)
		tail = &(*tail)->next;
	*tail = list;
}

/* Callbacks may call the store again, close() included; close() delivers
 * whatever is still on the list, so this loop simply finds it empty. */
static void
deliver(struct sq_store *st)
{
	struct sq_op *op;

	while ((op = st->deliver) != NULL) {
		st->deliver = op->next;
		op_finish(st, op);
	}
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct sq_store *st = arg;
	uint64_t v;

	(void)fd;
	(void)what;
	/* read before taking the list: a wake-up for anything added later
	 * is then still pending */
	if (read(st->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("store_sqlite: reading the wake-up eventfd: %s", strerror(errno));
	enter(st);
	if (!st->closed) {
		take_done(st);
		deliver(st);
	}
	leave(st);
}

/* A new operation with copies of the strings (NULL stays NULL). */
static struct sq_op *
op_new(enum sq_kind kind, const char *ns, const char *const *s, int ns_count, store_cb cb, void *arg)
{
	size_t len[SQ_NSTR], nslen = ns != NULL ? strlen(ns) + 1 : 0, total = nslen;
	struct sq_op *op;
	char *p;

	for (int i = 0; i < ns_count; i++) {
		len[i] = s[i] != NULL ? strlen(s[i]) : 0;
		total += s[i] != NULL ? len[i] + 1 : 0;
	}
	op = op_take();
	if (op == NULL)
		return NULL;
	op->magic = SQ_OP_MAGIC;
	if (total > op->strs_cap) {
		size_t cap = total < 256 ? 256 : total;

		p = realloc(op->strs, cap);
		if (p == NULL) {
			op_free(op);
			return NULL;
		}
		op->strs = p;
		op->strs_cap = cap;
	}
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	p = op->strs;
	if (ns != NULL) {
		memcpy(p, ns, nslen);
		op->ns = p;
		p += nslen;
	}
	for (int i = 0; i < ns_count; i++) {
		if (s[i] == NULL)
			continue;
		memcpy(p, s[i], len[i] + 1);
		op->s[i] = p;
		op->slen[i] = len[i];
		p += len[i] + 1;
	}
	return op;
}

/* Queues op; -1 (op freed, no callback) when closed or the queue is full. */
static int
submit(struct sq_store *st, struct sq_op *op)
{
	if (op == NULL)
		return -1;
	if (st->closed)
		goto reject;
	pthread_mutex_lock(&st->mu);
	if (st->in_len >= SQ_QUEUE_MAX) {
		pthread_mutex_unlock(&st->mu);
		goto reject;
	}
	if (st->in_tail != NULL)
		st->in_tail->next = op;
	else
		st->in_head = op;
	st->in_tail = op;
	st->in_len++;
	if (st->stats != NULL)
		st->stats->db_queue_waiting = st->in_len;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
	return 0;
reject:
	op_free(op);
	return -1;
}

/* ---- store_ops ----------------------------------------------------------------- */

static int
sq_write(struct store *s, const char *ns, const struct store_write_req *w, store_cb cb, void *arg)
{
	const char *v[SQ_NSTR] = {w->id, w->stream, w->type, w->data != NULL ? w->data : "{}", w->metadata};
	struct sq_op *op = op_new(K_WRITE, ns, v, SQ_NSTR, cb, arg);

	if (op != NULL) {
		op->n[0] = w->expected;
		op->flag = w->has_expected;
		for (int i = 0; i < SQ_NSTR; i++)
			op->wbytes += op->slen[i];
	}
	return submit(sq_of(s), op);
}

static int
sq_get_stream(struct store *s, const char *ns, const char *stream, bool by_gpos, int64_t from, int64_t limit,
              store_cb cb, void *arg)
{
	const char *v[1] = {stream};
	struct sq_op *op = op_new(K_STREAM, ns, v, 1, cb, arg);

	if (op != NULL) {
		op->n[0] = from;
		op->n[1] = limit;
		op->flag = by_gpos;
	}
	return submit(sq_of(s), op);
}

static int
sq_get_last(struct store *s, const char *ns, const char *stream, const char *type, store_cb cb, void *arg)
{
	/* type "" is a real filter (matches nothing), NULL means none: as
	 * on PostgreSQL */
	const char *v[2] = {stream, type};

	return submit(sq_of(s), op_new(K_LAST, ns, v, 2, cb, arg));
}

static int
sq_version(struct store *s, const char *ns, const char *stream, store_cb cb, void *arg)
{
	const char *v[1] = {stream};

	return submit(sq_of(s), op_new(K_VERSION, ns, v, 1, cb, arg));
}

static int
sq_get_category(struct store *s, const char *ns, const struct store_category_req *q, store_cb cb, void *arg)
{
	const char *v[2] = {q->category != NULL ? q->category : "", q->correlation};
	struct sq_op *op = op_new(K_CATEGORY, ns, v, 2, cb, arg);

	if (op != NULL) {
		op->n[0] = q->from_gpos;
		op->n[1] = q->limit;
		op->n[2] = q->member;
		op->n[3] = q->size;
	}
	return submit(sq_of(s), op);
}

static int
sq_ns_create(struct store *s, const struct store_ns_create_req *q, store_cb cb, void *arg)
{
	const char *v[2] = {q->token_hash, q->description != NULL ? q->description : ""};
	struct sq_op *op = op_new(K_NS_CREATE, q->id, v, 2, cb, arg);

	if (op != NULL)
		op->n[0] = q->created_at_us;
	return submit(sq_of(s), op);
}

static int
sq_ns_delete(struct store *s, const char *id, store_cb cb, void *arg)
{
	return submit(sq_of(s), op_new(K_NS_DELETE, id, NULL, 0, cb, arg));
}

static int
sq_ns_list(struct store *s, store_cb cb, void *arg)
{
	return submit(sq_of(s), op_new(K_NS_LIST, NULL, NULL, 0, cb, arg));
}

static int
sq_ns_info(struct store *s, const char *id, store_cb cb, void *arg)
{
	return submit(sq_of(s), op_new(K_NS_INFO, id, NULL, 0, cb, arg));
}

static int
sq_ns_streams(struct store *s, const char *ns, const char *prefix, const char *cursor, int64_t limit, store_cb cb,
              void *arg)
{
	const char *v[2] = {prefix != NULL ? prefix : "", cursor != NULL ? cursor : ""};
	struct sq_op *op = op_new(K_STREAMS, ns, v, 2, cb, arg);

	if (op != NULL)
		op->n[0] = limit;
	return submit(sq_of(s), op);
}

static int
sq_ns_categories(struct store *s, const char *ns, store_cb cb, void *arg)
{
	return submit(sq_of(s), op_new(K_CATS, ns, NULL, 0, cb, arg));
}

static int
sq_import(struct store *s, const char *ns, const struct store_import_rec *recs, size_t n, store_cb cb, void *arg)
{
	struct sq_op *op;

	if (n == 0 || n > STORE_IMPORT_MAX)
		return -1;
	op = op_new(K_IMPORT, ns, NULL, 0, cb, arg);
	if (op != NULL) {
		op->recs = recs;
		op->nrecs = n;
	}
	return submit(sq_of(s), op);
}

static int
sq_clear(struct store *s, const char *ns, store_cb cb, void *arg)
{
	return submit(sq_of(s), op_new(K_CLEAR, ns, NULL, 0, cb, arg));
}

static int
sq_connections(struct store *s)
{
	return atomic_load(&sq_of(s)->nconn);
}

/*
 * Stops the thread (it finishes the operation it is running), delivers the
 * finished operations with their real outcome (a write may have
 * committed), and fails the ones that never ran. May be called from a
 * callback; the memory goes when the outermost entry point returns.
 */
static void
sq_close_store(struct store *s)
{
	struct sq_store *st = sq_of(s);
	struct sq_op *op, *next;

	if (st->closed)
		return;
	st->closed = true;
	enter(st);
	if (st->ev != NULL)
		event_del(st->ev);
	if (st->thr_started) {
		pthread_mutex_lock(&st->mu);
		st->stop = true;
		pthread_cond_broadcast(&st->cv);
		pthread_mutex_unlock(&st->mu);
		if (pthread_join(st->thr, NULL) != 0)
			log_error("store_sqlite: cannot join the database thread");
		st->thr_started = false;
	}
	take_done(st);
	deliver(st);
	pthread_mutex_lock(&st->mu);
	op = st->in_head;
	st->in_head = st->in_tail = NULL;
	st->in_len = 0;
	pthread_mutex_unlock(&st->mu);
	for (; op != NULL; op = next) {
		next = op->next;
		op->rep.status = ST_UNAVAILABLE;
		op->rep.error = "store closed";
		op_finish(st, op);
	}
	leave(st);
}

static const struct store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close_store,
    .connections = sq_connections,
    .write = sq_write,
    .get_stream = sq_get_stream,
    .get_last = sq_get_last,
    .version = sq_version,
    .get_category = sq_get_category,
    .ns_create = sq_ns_create,
    .ns_delete = sq_ns_delete,
    .ns_list = sq_ns_list,
    .ns_info = sq_ns_info,
    .ns_streams = sq_ns_streams,
    .ns_categories = sq_ns_categories,
    .import = sq_import,
    .clear = sq_clear,
};

struct store *
sq_store_open(struct event_base *base, const struct store_cfg *c)
{
	struct sq_store *st;
	sigset_t all, old;
	char err[512];
	int rc;

	if (base == NULL || c == NULL)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->base.ops = &sq_ops;
	st->magic = SQ_MAGIC;
	st->evb = base;
	st->efd = -1;
	st->batch_max = c->batch_max > 1 ? c->batch_max : 1;
	st->batch_bytes = c->batch_bytes > 0 ? c->batch_bytes : 1024 * 1024;
	st->stats = c->stats;
	atomic_init(&st->nconn, 0);
	if (pthread_mutex_init(&st->mu, NULL) != 0) {
		free(st);
		return NULL;
	}
	{
		/* timed waits measure on the monotonic clock */
		pthread_condattr_t ca;
		int crc = pthread_condattr_init(&ca);

		if (crc == 0) {
			crc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
			if (crc == 0)
				crc = pthread_cond_init(&st->cv, &ca);
			pthread_condattr_destroy(&ca);
		}
		if (crc != 0) {
			pthread_mutex_destroy(&st->mu);
			free(st);
			return NULL;
		}
	}
	st->ns_gen = c->ns_generation;
	if (st->ns_gen != NULL)
		st->ns_gen_seen = *st->ns_gen;
	if (sq_registry_path(c, st->regpath, sizeof(st->regpath), err, sizeof(err)) < 0) {
		log_error("store_sqlite: %s", err);
		goto fail;
	}
	/* fail at start rather than on every request */
	if (access(st->regpath, R_OK | W_OK) != 0) {
		log_error("store_sqlite: %s: %s", st->regpath, strerror(errno));
		goto fail;
	}
	st->dir = strdup(c->data_dir);
	st->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (st->dir == NULL || st->efd < 0)
		goto fail;
	st->ev = event_new(base, st->efd, EV_READ | EV_PERSIST, on_wake, st);
	if (st->ev == NULL || event_add(st->ev, NULL) != 0)
		goto fail;
	/* signals stay with the event loop's thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&st->thr, NULL, sq_thread, st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error("store_sqlite: cannot start the database thread: %s", strerror(rc));
		goto fail;
	}
	st->thr_started = true;
	return &st->base;
fail:
	store_free(st);
	return NULL;
}
