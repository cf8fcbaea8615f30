/*
 * The PostgreSQL store: struct store_ops over a small pool of non-blocking
 * libpq connections driven by the worker's event_base. The event loop never
 * waits on the database: requests wait in a bounded FIFO queue for an idle
 * connection, every statement is prepared once per connection and then run
 * with PQsendQueryPrepared, and results are read as the socket becomes
 * readable. Lost connections fail their in-flight request and come back with
 * exponential backoff.
 *
 * Re-entrancy: completion callbacks may call back into the store, including
 * close(). Every entry point (API call or libevent callback) holds st->depth
 * so memory is only released when the outermost one returns, and code that
 * ran a callback re-checks st->closed before touching a connection again.
 * A store call never runs a callback before it returns (store.h contract):
 * when sending fails synchronously the request goes back to the queue.
 *
 * Statement texts are in store_pg_stmt.c, result decoding in
 * store_pg_reply.c.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "jsonw.h"
#include "log.h"
#include "pool.h"
#include "stats.h"
#include "store.h"
#include "store_pg.h"
#include "store_pg_int.h"

static const struct store_ops store_pg_ops;

/* One pool for every store of the process: it registers itself in the
 * process-wide pool list, so it must outlive any single store. */
static struct pool op_pool;
static bool op_pool_ready;

static void conn_connect(struct pg_conn *c);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_connect_io(evutil_socket_t fd, short what, void *arg);
static void conn_lost(struct pg_conn *c, const char *why);
static void dispatch(struct store_pg *st);
static void conn_next(struct pg_conn *c);
static void store_pg_free(struct store_pg *st);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
enter(struct store_pg *st)
{
	st->depth++;
}

static void
leave(struct store_pg *st)
{
	if (--st->depth == 0 && st->closed)
		store_pg_free(st);
}

static struct store_pg *
pg_of(struct store *s)
{
	struct store_pg *st = (struct store_pg *)s;

	if (st == NULL || st->magic != STORE_PG_MAGIC) {
		log_error("store_pg: bad store object");
		abort();
	}
	return st;
}

/* libpq's (multi-line) message on one line for the log, its lines joined
 * as sentences (store_pg_one_line), copied into c->errbuf so it survives
 * PQfinish and PQclear. */
const char *
store_pg_conn_errmsg(struct pg_conn *c, const char *msg)
{
	store_pg_one_line(msg == NULL || *msg == '\0' ? "unknown error" : msg, c->errbuf, sizeof(c->errbuf));
	return c->errbuf;
}

/* ---- operations ---------------------------------------------------------- */

static void
op_dtor(void *obj)
{
	struct pg_op *op = obj;

	free(op->buf);
	op->buf = NULL;
	op->bufcap = 0;
}

struct pg_op *
store_pg_op_get(void)
{
	struct pg_op *op = pool_get(&op_pool);

	if (op == NULL)
		return NULL;
	op->magic = STORE_PG_OP_MAGIC;
	op->next = NULL;
	op->nparams = 0;
	op->lengths = NULL;
	op->formats = NULL;
	op->cb = NULL;
	op->arg = NULL;
	op->recs = NULL;
	op->nrecs = 0;
	op->batchable = false;
	op->solo = false;
	op->members = NULL;
	op->nmembers = 0;
	return op;
}

void
store_pg_op_put(struct pg_op *op)
{
	if (op->magic != STORE_PG_OP_MAGIC) {
		log_error("store_pg: bad operation object");
		abort();
	}
	/* one huge message must not pin its buffer in the pool forever */
	if (op->bufcap > STORE_PG_OP_BUF_KEEP)
		op_dtor(op);
	op->magic = 0;
	pool_put(&op_pool, op);
}

/* Copies the parameters into the operation, so callers need not keep their
 * strings alive until the callback. NULL stays NULL (SQL NULL). */
static int
op_params(struct pg_op *op, int n, const char *const *vals)
{
	size_t len[STORE_PG_MAX_PARAMS], total = 0, off = 0;

	for (int i = 0; i < n; i++) {
		len[i] = vals[i] != NULL ? strlen(vals[i]) + 1 : 0;
		total += len[i];
	}
	if (total > op->bufcap) {
		size_t cap = total < 256 ? 256 : total;
		char *b = realloc(op->buf, cap);

		if (b == NULL)
			return -1;
		op->buf = b;
		op->bufcap = cap;
	}
	for (int i = 0; i < n; i++) {
		if (vals[i] == NULL) {
			op->values[i] = NULL;
			continue;
		}
		memcpy(op->buf + off, vals[i], len[i]);
		op->values[i] = op->buf + off;
		off += len[i];
	}
	op->nparams = n;
	return 0;
}

/* Runs the operation's callback with r; the operation is recycled first so
 * the callback may queue new work freely. */
void
store_pg_op_complete(struct pg_op *op, const struct store_reply *r)
{
	store_cb cb = op->cb;
	void *arg = op->arg;

	store_pg_op_put(op);
	cb(r, arg);
}

void
store_pg_op_fail(struct pg_op *op, enum store_status status, const char *msg)
{
	struct store_reply r;

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.error = msg;
	store_pg_op_complete(op, &r);
}

/* ---- queue ------------------------------------------------------------------ */

void
store_pg_queue_gauge(struct store_pg *st)
{
	if (st->stats != NULL)
		st->stats->db_queue_waiting = st->qlen;
}

static void
queue_arm(struct store_pg *st)
{
	struct timeval tv;
	int64_t wait;

	if (st->qhead == NULL || evtimer_pending(st->qtimer, NULL))
		return;
	wait = st->qhead->deadline_ms - now_ms();
	if (wait < 1)
		wait = 1;
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	if (evtimer_add(st->qtimer, &tv) != 0)
		log_error("store_pg: cannot arm the queue timer");
}

static void
queue_push(struct store_pg *st, struct pg_op *op)
{
	op->next = NULL;
	if (st->qtail != NULL)
		st->qtail->next = op;
	else
		st->qhead = op;
	st->qtail = op;
	st->qlen++;
	store_pg_queue_gauge(st);
	queue_arm(st);
}

/* Back to the front: the request keeps its place (and its deadline). */
void
store_pg_queue_push_front(struct store_pg *st, struct pg_op *op)
{
	op->next = st->qhead;
	st->qhead = op;
	if (st->qtail == NULL)
		st->qtail = op;
	st->qlen++;
	store_pg_queue_gauge(st);
	queue_arm(st);
}

static struct pg_op *
queue_pop(struct store_pg *st)
{
	struct pg_op *op = st->qhead;

	if (op == NULL)
		return NULL;
	st->qhead = op->next;
	if (st->qhead == NULL)
		st->qtail = NULL;
	st->qlen--;
	store_pg_queue_gauge(st);
	op->next = NULL;
	return op;
}

/* Fails every waiting request. The queue is detached first: callbacks may
 * queue new requests, which are not ours to fail. */
static void
queue_fail_all(struct store_pg *st, const char *msg)
{
	struct pg_op *op = st->qhead, *next;

	st->qhead = st->qtail = NULL;
	st->qlen = 0;
	store_pg_queue_gauge(st);
	for (; op != NULL; op = next) {
		next = op->next;
		store_pg_op_fail(op, ST_UNAVAILABLE, msg);
	}
}

static void
on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store_pg *st = arg;
	struct pg_op *expired = NULL, **tail = &expired, *op, *next;
	int64_t now = now_ms();

	(void)fd;
	(void)what;
	enter(st);
	while (st->qhead != NULL && st->qhead->deadline_ms <= now) {
		op = queue_pop(st);
		*tail = op;
		tail = &op->next;
	}
	for (op = expired; op != NULL; op = next) {
		next = op->next;
		store_pg_op_fail(op, ST_UNAVAILABLE, "database busy: no connection became free in time");
	}
	if (!st->closed)
		queue_arm(st);
	leave(st);
}


/* ---- connections: sending ------------------------------------------------------ */

/* 0 when everything is written, 1 when waiting for EV_WRITE, -1 on error. */
static int
conn_flush(struct pg_conn *c)
{
	int r = PQflush(c->pg);

	if (r < 0)
		return -1;
	c->flushing = r == 1;
	if (c->flushing && event_add(c->ev_wr, NULL) != 0)
		return -1;
	return r;
}

/* ns.create in one round trip: the registry row and the whole schema as one
 * multi-statement simple query, which PostgreSQL runs as one implicit
 * transaction (no BEGIN/COMMIT, so an error can never leave the session
 * inside an aborted transaction block). Values are escaped literals,
 * identifiers are quoted. */
static char *
ns_create_sql(struct pg_conn *c, struct pg_op *op)
{
	char *lit[4] = {NULL, NULL, NULL, NULL}, *ddl = NULL, *sql = NULL;
	char schema[STORE_PG_SCHEMA_BUFLEN];
	const char *v[4];
	size_t len;

	if (store_pg_schema_name(op->values[0], schema, sizeof(schema)) < 0)
		return NULL;
	v[0] = op->values[0];
	v[1] = op->values[1];
	v[2] = schema;
	v[3] = op->values[2] != NULL ? op->values[2] : "";
	for (int i = 0; i < 4; i++) {
		lit[i] = PQescapeLiteral(c->pg, v[i], strlen(v[i]));
		if (lit[i] == NULL)
			goto out;
	}
	ddl = store_pg_namespace_ddl(op->values[0]);
	if (ddl == NULL)
		goto out;
	len = strlen(ddl) + strlen(lit[0]) + strlen(lit[1]) + strlen(lit[2]) + strlen(lit[3]) + 256;
	sql = malloc(len);
	if (sql != NULL)
		snprintf(sql, len,
		         "INSERT INTO eventodb_store.namespaces"
		         " (id, token_hash, schema_name, description, created_at, created_at_us)"
		         " VALUES (%s, %s, %s, %s, %s / 1000000, %s);\n%s",
		         lit[0], lit[1], lit[2], lit[3], op->values[3], op->values[3], ddl);
out:
	for (int i = 0; i < 4; i++)
		PQfreemem(lit[i]);
	free(ddl);
	return sql;
}

static void
stmt_name(int idx, char *buf, size_t cap)
{
	snprintf(buf, cap, "q%d", idx);
}

/* Sends the next protocol step of c->op: PREPARE when the statement is new
 * on this connection, else EXECUTE. Returns 0, or -1 when the connection
 * failed (c->op is left in place for the caller). */
static int
conn_send_step(struct pg_conn *c)
{
	struct store_pg *st = c->st;
	struct pg_op *op = c->op;
	char name[24];
	int ok;

	if (op->kind == OP_NS_CREATE) {
		char *sql = ns_create_sql(c, op);

		if (sql == NULL) {
			store_pg_conn_errmsg(c, "out of memory building ns.create");
			return -1;
		}
		ok = PQsendQuery(c->pg, sql);
		free(sql);
		c->phase = P_EXEC;
	} else {
		stmt_name(op->stmt, name, sizeof(name));
		if (!c->prepared[op->stmt]) {
			ok = PQsendPrepare(c->pg, name, st->stmts[op->stmt].sql, st->stmts[op->stmt].nparams, NULL);
			c->phase = P_PREPARE;
		} else {
			ok = PQsendQueryPrepared(c->pg, name, op->nparams, op->values, op->lengths, op->formats, 0);
			c->phase = P_EXEC;
		}
	}
	if (!ok) {
		store_pg_conn_errmsg(c, PQerrorMessage(c->pg));
		return -1;
	}
	return conn_flush(c) < 0 ? (store_pg_conn_errmsg(c, PQerrorMessage(c->pg)), -1) : 0;
}

/* Starts op on idle connection c. On a synchronous failure the request goes
 * back to the front of the queue (no callback can run here: this is reached
 * from store calls) and the connection is dropped. */
static void
conn_start(struct pg_conn *c, struct pg_op *op)
{
	c->op = op;
	c->state = C_BUSY;
	if (conn_send_step(c) == 0)
		return;
	c->op = NULL;
	store_pg_requeue(c->st, op);
	conn_lost(c, c->errbuf);
}

static struct pg_conn *
idle_conn(struct store_pg *st)
{
	for (int i = 0; i < st->npool; i++) {
		if (st->conns[i].state == C_IDLE)
			return &st->conns[i];
	}
	return NULL;
}

/* Runs what can run on the idle connections. Work that could run but finds
 * no idle connection asks for another one (on demand, up to the pool
 * size), from the loop: connecting may fail at once, and a store call
 * never runs a callback before it returns. */
static void
dispatch(struct store_pg *st)
{
	struct pg_conn *c;
	struct pg_op *op;

	for (;;) {
		if (st->closed || st->qhead == NULL)
			return;
		if ((c = idle_conn(st)) == NULL)
			break;
		if ((op = store_pg_take(st)) == NULL)
			return;
		store_pg_keys_hold(c, op);
		conn_start(c, op);
	}
	if (!st->kicking && st->nup + st->nconnecting < st->npool && !st->connect_failed && store_pg_runnable(st))
		event_active(st->ev_kick, EV_TIMEOUT, 1);
}

/* Opens connections for the work that is waiting and could run, at most
 * one per such request and never beyond the pool. */
static void
conn_grow(struct store_pg *st)
{
	int want = 0, scanned = 0;

	store_pg_write_room(st);
	for (struct pg_op *op = st->qhead; op != NULL && want < st->npool && scanned < STORE_PG_SCAN_MAX;
	     op = op->next, scanned++)
		if (!store_pg_held(st, op))
			want++;
	want -= st->nconnecting;
	for (int i = 0; i < st->npool && want > 0 && !st->closed; i++) {
		struct pg_conn *c = &st->conns[i];

		if (c->state == C_DOWN && !evtimer_pending(c->ev_timer, NULL)) {
			conn_connect(c);
			want--;
		}
	}
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct store_pg *st = arg;

	(void)fd;
	(void)what;
	enter(st);
	/* requests put back by a lost connection may find an idle one */
	st->kicking = true;
	dispatch(st);
	st->kicking = false;
	if (!st->closed && !st->connect_failed)
		conn_grow(st);
	leave(st);
}

/* Writes waited for a write slot long enough: look again. */
static void
on_stall(evutil_socket_t fd, short what, void *arg)
{
	struct store_pg *st = arg;

	(void)fd;
	(void)what;
	enter(st);
	dispatch(st);
	leave(st);
}

/* The connection has nothing to do: take the next request, or rest. */
static void
conn_idle(struct pg_conn *c)
{
	c->state = C_IDLE;
	c->phase = P_NONE;
	c->idle_since_ms = now_ms();
	dispatch(c->st);
}

/* ---- connections: life cycle ---------------------------------------------------- */

static void
conn_close(struct pg_conn *c)
{
	struct store_pg *st = c->st;

	event_del(c->ev_io);
	event_del(c->ev_wr);
	event_del(c->ev_timer);
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	if (c->state == C_IDLE || c->state == C_BUSY)
		st->nup--;
	else if (c->state == C_CONNECTING)
		st->nconnecting--;
	c->state = C_DOWN;
	c->phase = P_NONE;
	c->flushing = false;
}

static void
conn_schedule(struct pg_conn *c, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (evtimer_add(c->ev_timer, &tv) != 0)
		log_error("store_pg: cannot arm a connection timer");
}

static void
conn_backoff(struct pg_conn *c)
{
	c->backoff_ms = c->backoff_ms == 0 ? STORE_PG_BACKOFF_MIN_MS : c->backoff_ms * 2;
	if (c->backoff_ms > STORE_PG_BACKOFF_MAX_MS)
		c->backoff_ms = STORE_PG_BACKOFF_MAX_MS;
	conn_schedule(c, c->backoff_ms);
}

/* The connection broke: fail what was in flight on it (the outcome of a
 * write is unknown, so it is not retried), close it, retry later. Writes
 * of a failed batch that were still to be written one by one never
 * reached the database: they go back to the front of the queue. */
static void
conn_lost(struct pg_conn *c, const char *why)
{
	struct store_pg *st = c->st;
	struct pg_op *op = c->op, *retry = c->retry;

	log_warn("database connection %d lost: %s", c->idx, why);
	c->op = NULL;
	c->retry = NULL;
	PQclear(c->res);
	c->res = NULL;
	conn_close(c);
	store_pg_keys_release(c);
	c->quiet = false;
	if (!st->closed)
		conn_backoff(c);
	while (retry != NULL) {
		struct pg_op *m = retry, *last = NULL;

		for (; m->next != NULL; last = m, m = m->next)
			;
		if (last != NULL)
			last->next = NULL;
		else
			retry = NULL;
		store_pg_queue_push_front(st, m);
	}
	if (op != NULL)
		store_pg_fail_all(op, ST_UNAVAILABLE, "database connection lost");
	if (!st->closed && st->qhead != NULL)
		event_active(st->ev_kick, EV_TIMEOUT, 1);
}

static void
conn_connect_failed(struct pg_conn *c, const char *why)
{
	struct store_pg *st = c->st;
	char msg[300];

	/* libpq's reason as one line that says where (store_pg_migrate.c) */
	if (c->pg != NULL && why == PQerrorMessage(c->pg))
		store_pg_connect_error(c->pg, c->errbuf, sizeof(c->errbuf));
	else
		snprintf(c->errbuf, sizeof(c->errbuf), "cannot connect to the database: %s", why);
	if (!c->quiet)
		log_warn("database connection %d: %s", c->idx, c->errbuf);
	else
		log_debug("database connection %d: %s", c->idx, c->errbuf);
	c->quiet = true;
	conn_close(c);
	st->connect_failed = true;
	conn_backoff(c);
	/* Nothing can serve the waiting requests soon: answer them now
	 * instead of letting them sit until their deadline. */
	if (st->nup == 0 && st->qhead != NULL) {
		snprintf(msg, sizeof(msg), "database unavailable: %s", c->errbuf);
		queue_fail_all(st, msg);
	}
}

/* The connection is up: watch its socket for results and for the server
 * going away, and start serving the queue. */
static void
conn_connected(struct pg_conn *c)
{
	struct store_pg *st = c->st;
	evutil_socket_t fd = PQsocket(c->pg);

	event_del(c->ev_timer);
	event_del(c->ev_io);
	if (PQsetnonblocking(c->pg, 1) != 0 ||
	    event_assign(c->ev_io, st->evb, fd, EV_READ | EV_PERSIST, on_read, c) != 0 ||
	    event_assign(c->ev_wr, st->evb, fd, EV_WRITE, on_write, c) != 0 || event_add(c->ev_io, NULL) != 0) {
		conn_connect_failed(c, "cannot register the connection socket");
		return;
	}
	/* a new session has no prepared statements */
	memset(c->prepared, 0, c->prepared_cap);
	c->backoff_ms = 0;
	c->quiet = false;
	st->nconnecting--;
	st->nup++;
	st->connect_failed = false;
	if (c->was_up) {
		st->reconnects++;
		log_info("database connection %d re-established", c->idx);
	}
	c->was_up = true;
	conn_idle(c);
}

/* Waits for what PQconnectPoll asked for, on the socket it has now (libpq
 * may switch sockets while trying several hosts or addresses). */
static void
conn_connect_wait(struct pg_conn *c, PostgresPollingStatusType ps)
{
	struct store_pg *st = c->st;
	evutil_socket_t fd;
	short what;

	switch (ps) {
	case PGRES_POLLING_OK:
		conn_connected(c);
		return;
	case PGRES_POLLING_FAILED:
		conn_connect_failed(c, PQerrorMessage(c->pg));
		return;
	case PGRES_POLLING_READING:
		what = EV_READ;
		break;
	default:
		what = EV_WRITE;
		break;
	}
	fd = PQsocket(c->pg);
	event_del(c->ev_io);
	if (fd < 0 || event_assign(c->ev_io, st->evb, fd, what, on_connect_io, c) != 0 ||
	    event_add(c->ev_io, NULL) != 0)
		conn_connect_failed(c, "cannot register the connection socket");
}

static void
conn_connect(struct pg_conn *c)
{
	struct store_pg *st = c->st;
	const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *const vals[] = {st->url, "eventodb", NULL};

	/* Note: a host name (not hostaddr) in the URL is resolved
	 * synchronously by libpq here. */
	c->pg = PQconnectStartParams(keys, vals, 1);
	if (c->pg == NULL) {
		conn_connect_failed(c, "out of memory");
		return;
	}
	c->state = C_CONNECTING;
	st->nconnecting++;
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c, PQerrorMessage(c->pg));
		return;
	}
	store_pg_log_notices(c->pg);
	/* libpq ignores connect_timeout in non-blocking mode: bound it here */
	conn_schedule(c, STORE_PG_CONNECT_TIMEOUT_MS);
	conn_connect_wait(c, PGRES_POLLING_WRITING);
}

static void
on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct store_pg *st = c->st;

	(void)fd;
	(void)what;
	enter(st);
	if (!st->closed && c->state == C_CONNECTING)
		conn_connect_wait(c, PQconnectPoll(c->pg));
	leave(st);
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct store_pg *st = c->st;

	(void)fd;
	(void)what;
	enter(st);
	if (!st->closed) {
		/* the first connection always comes back; the others when
		 * there is work for them */
		if (c->state == C_DOWN && (c->idx == 0 || st->qhead != NULL))
			conn_connect(c);
		else if (c->state == C_CONNECTING)
			conn_connect_failed(c, "connection timed out");
	}
	leave(st);
}

/* ---- connections: results ----------------------------------------------------------- */

/* A multi-statement query yields one result per statement: keep the first
 * error, or else the last result. */
static void
conn_keep_result(struct pg_conn *c, PGresult *r)
{
	if (c->res == NULL) {
		c->res = r;
	} else if (store_pg_is_error(c->res)) {
		PQclear(r);
	} else {
		PQclear(c->res);
		c->res = r;
	}
}

/* After a reply: put the session back in a clean state if needed, else
 * take the next request. */
static void
conn_after_op(struct pg_conn *c, int stale_stmt)
{
	char sql[64];
	size_t n = 0;

	/* never expected (no explicit transactions here), but a session left
	 * inside a transaction would poison every later request */
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "ROLLBACK;");
	if (stale_stmt >= 0) {
		/* Forget a statement whose schema is gone; it is prepared
		 * afresh (and fails cleanly) on next use. */
		n += (size_t)snprintf(sql + n, sizeof(sql) - n, "DEALLOCATE q%d;", stale_stmt);
		c->prepared[stale_stmt] = 0;
	}
	if (n == 0) {
		conn_next(c);
		return;
	}
	c->phase = P_CLEANUP;
	if (!PQsendQuery(c->pg, sql) || conn_flush(c) < 0)
		conn_lost(c, store_pg_conn_errmsg(c, PQerrorMessage(c->pg)));
}

/* The session is clean: write the next message of a failed batch, or take
 * the next request. */
static void
conn_next(struct pg_conn *c)
{
	struct pg_op *op = c->retry;

	if (op == NULL) {
		store_pg_keys_release(c);
		conn_idle(c);
		return;
	}
	c->retry = op->next;
	op->next = NULL;
	c->op = op;
	c->phase = P_NONE;
	if (conn_send_step(c) == 0)
		return;
	/* never sent: back to the queue, before the rest (conn_lost puts
	 * those back first) */
	c->op = NULL;
	conn_lost(c, c->errbuf);
	store_pg_queue_push_front(c->st, op);
}

/* The current command has delivered all its results. */
static void
conn_command_done(struct pg_conn *c)
{
	struct store_pg *st = c->st;
	struct pg_op *op = c->op;
	PGresult *r = c->res;
	struct store_reply rep;
	bool stale = false;
	int stale_stmt;

	c->res = NULL;
	if (c->phase == P_CLEANUP) {
		PQclear(r);
		conn_next(c);
		return;
	}
	if (c->phase == P_PREPARE && r != NULL) {
		const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		/* 42P05: the session already has it (our cache lost track) */
		if (!store_pg_is_error(r) || (code != NULL && strcmp(code, "42P05") == 0)) {
			PQclear(r);
			c->prepared[op->stmt] = 1;
			if (conn_send_step(c) < 0)
				conn_lost(c, c->errbuf);
			return;
		}
	}
	/* the connection stays BUSY during the callbacks: nested requests
	 * queue or go to other connections, never to this one */
	c->op = NULL;
	if (op->kind == OP_BATCH) {
		stale_stmt = store_pg_batch_done(c, op, r);
		PQclear(r);
		goto after;
	}
	memset(&rep, 0, sizeof(rep));
	if (r == NULL) {
		rep.status = ST_ERROR;
		rep.error = "no result from the database";
	} else if (store_pg_is_error(r)) {
		store_pg_reply_error(c, op, r, &rep, &stale);
	} else {
		store_pg_reply_ok(c, op, r, &rep);
	}
	stale_stmt = stale ? op->stmt : -1;
	if (op->kind == OP_WRITE) {
		if (rep.status == ST_OK || rep.status == ST_CONFLICT || rep.status == ST_MSG_EXISTS)
			stats_write_batch(st->stats, 1);
		/* its category is free before anyone hears of the commit */
		if (c->retry == NULL)
			store_pg_keys_release(c);
	}
	store_pg_op_complete(op, &rep);
	PQclear(r);
after:
	if (st->closed || c->state != C_BUSY)
		return;
	/* an unlimited read must not pin its row array for the life of the
	 * connection */
	if (c->rows_cap > STORE_PG_ROWS_KEEP) {
		free(c->rows);
		c->rows = NULL;
		c->rows_cap = 0;
	}
	conn_after_op(c, stale_stmt);
}

/* Reads every result that is complete; returns when libpq needs more input
 * or the connection has nothing in flight. */
static void
conn_collect(struct pg_conn *c)
{
	struct store_pg *st = c->st;

	while (!st->closed && c->state == C_BUSY && !c->flushing && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);

		if (r != NULL) {
			conn_keep_result(c, r);
			continue;
		}
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			const char *why = c->res != NULL ? PQresultErrorField(c->res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

			conn_lost(c, store_pg_conn_errmsg(c, why != NULL ? why : PQerrorMessage(c->pg)));
			return;
		}
		conn_command_done(c);
	}
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct store_pg *st = c->st;
	PGnotify *nt;

	(void)fd;
	(void)what;
	enter(st);
	if (st->closed || c->pg == NULL)
		goto out;
	if (!PQconsumeInput(c->pg)) {
		conn_lost(c, store_pg_conn_errmsg(c, PQerrorMessage(c->pg)));
		goto out;
	}
	while ((nt = PQnotifies(c->pg)) != NULL)
		PQfreemem(nt);
	if (c->state == C_BUSY) {
		/* libpq may need the input drained before it can send more */
		if (c->flushing && conn_flush(c) < 0) {
			conn_lost(c, store_pg_conn_errmsg(c, PQerrorMessage(c->pg)));
			goto out;
		}
		conn_collect(c);
	} else if (PQstatus(c->pg) == CONNECTION_BAD) {
		/* an idle connection only gets data when the server goes away */
		conn_lost(c, store_pg_conn_errmsg(c, PQerrorMessage(c->pg)));
	}
out:
	leave(st);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	struct store_pg *st = c->st;

	(void)fd;
	(void)what;
	enter(st);
	if (!st->closed && c->state == C_BUSY && c->flushing) {
		if (conn_flush(c) < 0)
			conn_lost(c, store_pg_conn_errmsg(c, PQerrorMessage(c->pg)));
		else
			conn_collect(c);
	}
	leave(st);
}

/* ---- store_ops ------------------------------------------------------------------------ */

/* Queues one request. -1 (no callback, caller answers 503) when the store is
 * closed, the queue is full, or the database is known to be unreachable. */
static int
submit(struct store_pg *st, enum op_kind kind, const char *ns, int variant, int n, const char *const *vals, store_cb cb,
       void *arg)
{
	struct pg_op *op;
	int stmt = -1;

	if (st->closed || st->qlen >= STORE_PG_QUEUE_MAX || (st->nup == 0 && st->connect_failed))
		goto reject;
	if (kind != OP_NS_CREATE && (stmt = store_pg_stmt_get(st, ns, variant)) < 0)
		goto reject;
	op = store_pg_op_get();
	if (op == NULL)
		goto reject;
	if (op_params(op, n, vals) < 0) {
		store_pg_op_put(op);
		goto reject;
	}
	op->kind = kind;
	op->stmt = stmt;
	op->cb = cb;
	op->arg = arg;
	op->deadline_ms = now_ms() + STORE_PG_QUEUE_WAIT_MS;
	if (kind == OP_WRITE)
		store_pg_write_prepare(op);
	st->ops++;
	enter(st);
	queue_push(st, op);
	dispatch(st);
	leave(st);
	return 0;
reject:
	st->rejected++;
	return -1;
}

static int
pg_write(struct store *s, const char *ns, const struct store_write_req *w, store_cb cb, void *arg)
{
	char ev[24];
	const char *v[6] = {w->id, w->stream, w->type, w->data, w->metadata, NULL};

	if (w->has_expected) {
		snprintf(ev, sizeof(ev), "%" PRId64, w->expected);
		v[5] = ev;
	}
	return submit(pg_of(s), OP_WRITE, ns, V_WRITE, 6, v, cb, arg);
}

static int
pg_get_stream(struct store *s, const char *ns, const char *stream, bool by_gpos, int64_t from, int64_t limit,
              store_cb cb, void *arg)
{
	char f[24], l[24];
	const char *v[3] = {stream, f, limit < 0 ? NULL : l};

	snprintf(f, sizeof(f), "%" PRId64, from);
	snprintf(l, sizeof(l), "%" PRId64, limit);
	return submit(pg_of(s), OP_MSGS, ns, by_gpos ? V_STREAM_GPOS : V_STREAM_POS, 3, v, cb, arg);
}

static int
pg_get_last(struct store *s, const char *ns, const char *stream, const char *type, store_cb cb, void *arg)
{
	const char *v[2] = {stream, type};

	/* type "" is a real filter (matches nothing); NULL means none */
	return submit(pg_of(s), OP_LAST, ns, type != NULL ? V_LAST_TYPE : V_LAST, type != NULL ? 2 : 1, v, cb, arg);
}

static int
pg_version(struct store *s, const char *ns, const char *stream, store_cb cb, void *arg)
{
	const char *v[1] = {stream};

	return submit(pg_of(s), OP_VERSION, ns, V_VERSION, 1, v, cb, arg);
}

static int
pg_get_category(struct store *s, const char *ns, const struct store_category_req *q, store_cb cb, void *arg)
{
	char gpos[24], size[24], member[24], limit[24];
	const char *v[6];
	int n = 0, flags = 0;

	snprintf(gpos, sizeof(gpos), "%" PRId64, q->from_gpos);
	snprintf(size, sizeof(size), "%" PRId64, q->size);
	snprintf(member, sizeof(member), "%" PRId64, q->member);
	snprintf(limit, sizeof(limit), "%" PRId64, q->limit);
	if (q->category != NULL && q->category[0] != '\0') {
		flags |= CAT_NAME;
		v[n++] = q->category;
	}
	v[n++] = gpos;
	if (q->correlation != NULL) {
		flags |= CAT_CORR;
		v[n++] = q->correlation;
	}
	if (q->size > 0) {
		flags |= CAT_GROUP;
		v[n++] = size;
		v[n++] = member;
	}
	v[n++] = q->limit < 0 ? NULL : limit;
	return submit(pg_of(s), OP_MSGS, ns, V_CATEGORY + flags, n, v, cb, arg);
}

static int
pg_ns_create(struct store *s, const struct store_ns_create_req *q, store_cb cb, void *arg)
{
	char created[24];
	const char *v[4] = {q->id, q->token_hash, q->description, created};

	snprintf(created, sizeof(created), "%" PRId64, q->created_at_us);
	return submit(pg_of(s), OP_NS_CREATE, "", -1, 4, v, cb, arg);
}

static int
pg_ns_delete(struct store *s, const char *id, store_cb cb, void *arg)
{
	const char *v[1] = {id};

	return submit(pg_of(s), OP_NS_DELETE, "", V_NS_DELETE, 1, v, cb, arg);
}

static int
pg_ns_list(struct store *s, store_cb cb, void *arg)
{
	return submit(pg_of(s), OP_NS_LIST, "", V_NS_LIST, 0, NULL, cb, arg);
}

static int
pg_ns_info(struct store *s, const char *id, store_cb cb, void *arg)
{
	const char *v[1] = {id};

	return submit(pg_of(s), OP_NS_INFO, "", V_NS_INFO, 1, v, cb, arg);
}

static int
pg_ns_streams(struct store *s, const char *ns, const char *prefix, const char *cursor, int64_t limit, store_cb cb,
              void *arg)
{
	char l[24];
	const char *v[3] = {prefix != NULL ? prefix : "", cursor != NULL ? cursor : "", l};

	snprintf(l, sizeof(l), "%" PRId64, limit);
	return submit(pg_of(s), OP_STREAMS, ns, V_STREAMS, 3, v, cb, arg);
}

static int
pg_ns_categories(struct store *s, const char *ns, store_cb cb, void *arg)
{
	return submit(pg_of(s), OP_CATS, ns, V_CATEGORIES, 0, NULL, cb, arg);
}

/*
 * One import batch: the records as one JSON array parameter (built here,
 * handed to the operation without another copy).
 */
static int
pg_import(struct store *s, const char *ns, const struct store_import_rec *recs, size_t n, store_cb cb, void *arg)
{
	struct store_pg *st = pg_of(s);
	struct evbuffer *b;
	struct pg_op *op;
	char *text = NULL;
	size_t len;
	int stmt;

	if (st->closed || st->qlen >= STORE_PG_QUEUE_MAX || (st->nup == 0 && st->connect_failed) || n == 0 ||
	    n > STORE_IMPORT_MAX)
		goto reject;
	if ((stmt = store_pg_stmt_get(st, ns, V_IMPORT)) < 0 || (b = evbuffer_new()) == NULL)
		goto reject;
	jw_lit(b, "[");
	for (size_t i = 0; i < n; i++) {
		const struct store_import_rec *r = &recs[i];

		if (i > 0)
			jw_lit(b, ",");
		jw_lit(b, "{\"i\":");
		jw_cstr(b, r->id);
		jw_lit(b, ",\"s\":");
		jw_cstr(b, r->stream);
		jw_lit(b, ",\"t\":");
		jw_cstr(b, r->type);
		jw_lit(b, ",\"p\":");
		jw_i64(b, r->position);
		jw_lit(b, ",\"g\":");
		jw_i64(b, r->global_position);
		jw_lit(b, ",\"d\":");
		if (r->data != NULL)
			jw_raw(b, r->data, strlen(r->data));
		else
			jw_lit(b, "null");
		jw_lit(b, ",\"m\":");
		if (r->metadata != NULL)
			jw_raw(b, r->metadata, strlen(r->metadata));
		else
			jw_lit(b, "null");
		jw_lit(b, ",\"u\":");
		jw_i64(b, r->time_us);
		jw_lit(b, "}");
	}
	jw_lit(b, "]");
	len = evbuffer_get_length(b);
	text = malloc(len + 1);
	if (text == NULL || evbuffer_remove(b, text, len) != (int)len) {
		evbuffer_free(b);
		goto reject;
	}
	evbuffer_free(b);
	text[len] = '\0';
	if ((op = store_pg_op_get()) == NULL)
		goto reject;
	/* the text becomes the operation's parameter buffer (op_put frees a
	 * buffer this large instead of keeping it) */
	free(op->buf);
	op->buf = text;
	op->bufcap = len + 1;
	op->values[0] = text;
	op->nparams = 1;
	op->kind = OP_IMPORT;
	op->stmt = stmt;
	op->cb = cb;
	op->arg = arg;
	op->recs = recs;
	op->nrecs = n;
	op->deadline_ms = now_ms() + STORE_PG_QUEUE_WAIT_MS;
	st->ops++;
	enter(st);
	queue_push(st, op);
	dispatch(st);
	leave(st);
	return 0;
reject:
	free(text);
	st->rejected++;
	return -1;
}

static int
pg_clear(struct store *s, const char *ns, store_cb cb, void *arg)
{
	return submit(pg_of(s), OP_CLEAR, ns, V_CLEAR, 0, NULL, cb, arg);
}

static int
pg_connections(struct store *s)
{
	return pg_of(s)->nup;
}

void
store_pg_get_stats(struct store *s, struct store_pg_stats *out)
{
	struct store_pg *st = pg_of(s);

	out->connections = st->nup;
	out->queued = st->qlen;
	out->ops = st->ops;
	out->rejected = st->rejected;
	out->reconnects = st->reconnects;
	out->statements = st->nstmts;
}

static void
store_pg_free(struct store_pg *st)
{
	for (int i = 0; i < st->npool; i++) {
		struct pg_conn *c = &st->conns[i];

		if (c->ev_io != NULL)
			event_free(c->ev_io);
		if (c->ev_wr != NULL)
			event_free(c->ev_wr);
		if (c->ev_timer != NULL)
			event_free(c->ev_timer);
		free(c->prepared);
		free(c->rows);
		free(c->keys);
	}
	free(st->conns);
	for (size_t i = 0; i < st->nstmts; i++) {
		free(st->stmts[i].ns);
		free(st->stmts[i].sql);
	}
	free(st->stmts);
	free(st->slots);
	if (st->qtimer != NULL)
		event_free(st->qtimer);
	if (st->ev_sweep != NULL)
		event_free(st->ev_sweep);
	if (st->ev_kick != NULL)
		event_free(st->ev_kick);
	if (st->ev_stall != NULL)
		event_free(st->ev_stall);
	store_pg_keyset_free(&st->held);
	free(st->url);
	st->magic = 0;
	free(st);
}

static void
pg_close(struct store *s)
{
	struct store_pg *st = pg_of(s);

	if (st->closed)
		return;
	st->closed = true;
	enter(st);
	for (int i = 0; i < st->npool; i++) {
		struct pg_conn *c = &st->conns[i];
		struct pg_op *op = c->op, *m = c->retry, *next;

		c->op = NULL;
		c->retry = NULL;
		PQclear(c->res);
		c->res = NULL;
		conn_close(c);
		store_pg_keys_release(c);
		if (op != NULL)
			store_pg_fail_all(op, ST_UNAVAILABLE, "store closed");
		for (; m != NULL; m = next) {
			next = m->next;
			m->next = NULL;
			store_pg_op_fail(m, ST_UNAVAILABLE, "store closed");
		}
	}
	queue_fail_all(st, "store closed");
	event_del(st->qtimer);
	event_del(st->ev_sweep);
	event_del(st->ev_kick);
	event_del(st->ev_stall);
	leave(st);
}

static const struct store_ops store_pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .connections = pg_connections,
    .write = pg_write,
    .get_stream = pg_get_stream,
    .get_last = pg_get_last,
    .version = pg_version,
    .get_category = pg_get_category,
    .ns_create = pg_ns_create,
    .ns_delete = pg_ns_delete,
    .ns_list = pg_ns_list,
    .ns_info = pg_ns_info,
    .ns_streams = pg_ns_streams,
    .ns_categories = pg_ns_categories,
    .import = pg_import,
    .clear = pg_clear,
};

/* Extra connections (all but the first) idle for idle_ms close. */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct store_pg *st = arg;
	int64_t now = now_ms();

	(void)fd;
	(void)what;
	enter(st);
	for (int i = 1; i < st->npool && !st->closed; i++) {
		struct pg_conn *c = &st->conns[i];

		if (c->state == C_IDLE && now - c->idle_since_ms >= st->idle_ms) {
			log_debug("database connection %d idle for %d s: closing it", c->idx, st->idle_ms / 1000);
			conn_close(c);
			c->was_up = false; /* opening it again is no reconnect */
		}
	}
	leave(st);
}

struct store *
store_pg_open(struct event_base *base, const struct store_cfg *cfg)
{
	struct timeval sweep = {1, 0};
	struct store_pg *st;
	const char *url = cfg != NULL ? cfg->url : NULL;
	int pool_size = cfg != NULL ? cfg->pool_size : 0;

	if (pool_size < 1 || base == NULL || url == NULL)
		return NULL;
	if (!op_pool_ready) {
		pool_init(&op_pool, "store_op", sizeof(struct pg_op), STORE_PG_OP_POOL_FREE, op_dtor);
		op_pool_ready = true;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->base.ops = &store_pg_ops;
	st->magic = STORE_PG_MAGIC;
	st->evb = base;
	st->npool = pool_size;
	st->idle_ms = (cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : 60) * 1000;
	st->batch_max = cfg->batch_max > 1 ? cfg->batch_max : 1;
	st->batch_bytes = cfg->batch_bytes > 0 ? cfg->batch_bytes : 1024 * 1024;
	st->write_slots = 1; /* see store_pg_batch.c: one write transaction per worker at a time */
	st->stats = cfg->stats;
	st->url = strdup(url);
	st->conns = calloc((size_t)pool_size, sizeof(*st->conns));
	st->stmts_cap = 64;
	st->stmts = calloc(st->stmts_cap, sizeof(*st->stmts));
	st->nslots = 128;
	st->slots = calloc(st->nslots, sizeof(*st->slots));
	st->qtimer = evtimer_new(base, on_queue_timer, st);
	st->ev_sweep = event_new(base, -1, EV_PERSIST, on_sweep, st);
	st->ev_kick = event_new(base, -1, 0, on_kick, st);
	st->ev_stall = evtimer_new(base, on_stall, st);
	if (st->url == NULL || st->conns == NULL || st->stmts == NULL || st->slots == NULL || st->qtimer == NULL ||
	    st->ev_sweep == NULL || st->ev_kick == NULL || st->ev_stall == NULL || event_add(st->ev_sweep, &sweep) != 0)
		goto fail;
	for (int i = 0; i < pool_size; i++) {
		struct pg_conn *c = &st->conns[i];

		c->st = st;
		c->idx = i;
		/* created once; re-assigned to each new socket */
		c->ev_io = event_new(base, -1, 0, on_read, c);
		c->ev_wr = event_new(base, -1, 0, on_write, c);
		c->ev_timer = evtimer_new(base, on_conn_timer, c);
		c->rows_cap = 64 * sizeof(struct store_msg);
		c->rows = malloc(c->rows_cap);
		if (c->ev_io == NULL || c->ev_wr == NULL || c->ev_timer == NULL || c->rows == NULL)
			goto fail;
	}
	if (store_pg_stmt_grow_conns(st, st->stmts_cap) < 0)
		goto fail;
	/* one connection now; the others when work waits for one */
	enter(st);
	conn_connect(&st->conns[0]);
	leave(st);
	return &st->base;
fail:
	log_error("store_pg: out of memory opening the store");
	if (st->conns == NULL)
		st->npool = 0;
	store_pg_free(st);
	return NULL;
}
