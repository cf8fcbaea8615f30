/*
 * Write batching (group commit) in the PostgreSQL store, SPEC D24.
 *
 * Writes wait in the store's queue like any request. When a connection
 * frees up, the queued writes of the first write's namespace go together
 * as one call of the namespace's write_batch function (migration 006): one
 * statement, one transaction, one commit flush, one row of outcome per
 * write. Nothing waits for company: a write that finds a connection free
 * goes alone, at once, by the one-message path (write_message_ex); a batch
 * is only ever what queued up while every connection was busy. Caps:
 * --write-batch-max writes, --write-batch-bytes of their strings.
 *
 * A write whose category another connection of this store is writing
 * (a batch or a lone write in flight, tracked in st->held) stays queued:
 * on PostgreSQL it could only wait for that transaction's advisory lock,
 * which is held through the commit. Queued here instead, it joins the next
 * batch, so a hot category gets one commit per batch rather than one per
 * connection. And a worker writes on one connection at a time
 * (st->write_slots): with every connection writing alone, concurrent
 * writes to many categories would rarely find each other, each paying a
 * commit; with one, whatever arrives while a batch commits goes in the
 * next, so the batch grows with the load, and reads keep the other
 * connections. (Measured with contrib/bench-write.sh, 2 workers: one slot
 * against half the pool, 8,900 against 6,300 writes/s over 64 categories,
 * 8,100 against 7,700 on one; doc/perf/008-write-batching.md.) The
 * parallelism across writes is the workers'; a write stuck for
 * STORE_PG_WRITE_STALL_MS no longer holds the others up (below).
 * Anything that can run (reads, other categories) is taken past what
 * waits.
 *
 * Per-stream order is arrival order: writes are taken in queue order, and
 * once a write is left behind (over a cap, or held), every later write of
 * its category is left behind too. Replies are delivered in the batch's
 * order, which is also the order of the global positions it was given.
 *
 * A batch whose statement fails as a whole (a duplicate id inserted by a
 * concurrent transaction, a position taken by an import, a value
 * PostgreSQL rejects) is written again one message at a time on the same
 * connection, so each write gets the answer it would have had alone.
 *
 * Parameters are six arrays in PostgreSQL's binary array format, so data
 * and names are copied once and never escaped.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "stats.h"
#include "store_pg_int.h"

#define OID_INT8 20
#define OID_TEXT 25
#define OID_UUID 2950
#define OID_JSONB 3802

static const int binary_formats[STORE_PG_MAX_PARAMS] = {1, 1, 1, 1, 1, 1, 1, 1};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the set of categories being written ----------------------------------- */

static size_t
ks_slot(const struct pg_keyset *ks, uint64_t key)
{
	size_t j = (size_t)(key ^ (key >> 29)) & (ks->cap - 1);

	while (ks->key[j] != 0 && ks->key[j] != key)
		j = (j + 1) & (ks->cap - 1);
	return j;
}

static int
ks_grow(struct pg_keyset *ks)
{
	struct pg_keyset n;

	n.cap = ks->cap ? ks->cap * 2 : 64;
	n.used = ks->used;
	n.key = calloc(n.cap, sizeof(*n.key));
	n.count = calloc(n.cap, sizeof(*n.count));
	if (n.key == NULL || n.count == NULL) {
		free(n.key);
		free(n.count);
		return -1;
	}
	for (size_t i = 0; i < ks->cap; i++) {
		if (ks->key[i] != 0) {
			size_t j = ks_slot(&n, ks->key[i]);

			n.key[j] = ks->key[i];
			n.count[j] = ks->count[i];
		}
	}
	free(ks->key);
	free(ks->count);
	*ks = n;
	return 0;
}

bool
store_pg_keyset_has(const struct pg_keyset *ks, uint64_t key)
{
	return ks->cap > 0 && ks->key[ks_slot(ks, key)] == key;
}

/* Out of memory only costs batching (the database still serializes the
 * category), so a key that cannot be added is simply not held. */
bool
store_pg_keyset_add(struct pg_keyset *ks, uint64_t key)
{
	size_t j;

	if ((ks->used + 1) * 2 > ks->cap && ks_grow(ks) < 0)
		return false;
	j = ks_slot(ks, key);
	if (ks->key[j] == 0) {
		ks->key[j] = key;
		ks->count[j] = 0;
		ks->used++;
	}
	ks->count[j]++;
	return true;
}

void
store_pg_keyset_del(struct pg_keyset *ks, uint64_t key)
{
	size_t j, k;

	if (ks->cap == 0 || ks->key[j = ks_slot(ks, key)] != key)
		return;
	if (--ks->count[j] > 0)
		return;
	/* backward-shift deletion keeps every probe chain unbroken */
	ks->key[j] = 0;
	ks->used--;
	for (k = (j + 1) & (ks->cap - 1); ks->key[k] != 0; k = (k + 1) & (ks->cap - 1)) {
		size_t home = (size_t)(ks->key[k] ^ (ks->key[k] >> 29)) & (ks->cap - 1);

		/* move k into the hole j unless its home lies cyclically in (j, k] */
		if (j <= k ? (home > j && home <= k) : (home > j || home <= k))
			continue;
		ks->key[j] = ks->key[k];
		ks->count[j] = ks->count[k];
		ks->key[k] = 0;
		j = k;
	}
}

void
store_pg_keyset_free(struct pg_keyset *ks)
{
	free(ks->key);
	free(ks->count);
	memset(ks, 0, sizeof(*ks));
}

static void
conn_key_add(struct pg_conn *c, uint64_t key)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (c->keys[i] == key)
			return;
	if (c->nkeys == c->keys_cap) {
		size_t cap = c->keys_cap ? c->keys_cap * 2 : 16;
		uint64_t *k = realloc(c->keys, cap * sizeof(*k));

		if (k == NULL)
			return;
		c->keys = k;
		c->keys_cap = cap;
	}
	if (store_pg_keyset_add(&c->st->held, key))
		c->keys[c->nkeys++] = key;
}

void
store_pg_keys_hold(struct pg_conn *c, const struct pg_op *op)
{
	if (c->st->batch_max <= 1 || (op->kind != OP_WRITE && op->kind != OP_BATCH))
		return;
	c->write_slot = true;
	c->write_since_ms = mono_ms();
	c->st->writing++;
	if (op->kind == OP_WRITE)
		conn_key_add(c, op->catkey);
	else
		for (const struct pg_op *m = op->members; m != NULL; m = m->next)
			conn_key_add(c, m->catkey);
}

void
store_pg_keys_release(struct pg_conn *c)
{
	for (size_t i = 0; i < c->nkeys; i++)
		store_pg_keyset_del(&c->st->held, c->keys[i]);
	c->nkeys = 0;
	if (c->write_slot) {
		c->write_slot = false;
		c->st->writing--;
	}
}

/* ---- writes ---------------------------------------------------------------- */

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

void
store_pg_write_prepare(struct pg_op *op)
{
	const char *stream = op->values[1], *p;
	uint64_t h = 14695981039346656037u; /* FNV-1a 64 */
	int k = 0;

	for (p = stream; *p != '\0' && *p != '-'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211u;
	op->catkey = h != 0 ? h : 1; /* 0 marks an empty slot of the key set */
	op->wbytes = 0;
	for (int i = 0; i < 5; i++)
		if (op->values[i] != NULL)
			op->wbytes += strlen(op->values[i]);
	op->solo = false;
	op->batchable = true;
	for (p = op->values[0]; *p != '\0' && k < 32; p++) {
		int v = hexval(*p);

		if (*p == '-')
			continue;
		if (v < 0)
			break;
		op->uuid[k / 2] = (uint8_t)(k % 2 ? op->uuid[k / 2] | v : v << 4);
		k++;
	}
	if (k != 32 || *p != '\0')
		op->batchable = false;
}

/* ---- taking a batch off the queue -------------------------------------------- */

static void
unlink_after(struct store_pg *st, struct pg_op *prev, struct pg_op *op)
{
	if (prev != NULL)
		prev->next = op->next;
	else
		st->qhead = op->next;
	if (st->qtail == op)
		st->qtail = prev;
	st->qlen--;
	op->next = NULL;
	store_pg_queue_gauge(st);
}

/* A connection of this store is writing op's category. */
static bool
cat_busy(const struct store_pg *st, const struct pg_op *op)
{
	return store_pg_keyset_has(&st->held, op->catkey);
}

/*
 * Whether a write may take a connection: a write slot is free, or every
 * write in flight has been at it for STORE_PG_WRITE_STALL_MS (stuck on a
 * lock someone else holds, say), in which case waiting for them could take
 * any time and another connection writes after all. A write turned away
 * for want of a slot arms st->ev_stall, so it is looked at again then even
 * if nothing else happens.
 */
void
store_pg_write_room(struct store_pg *st)
{
	int64_t now;

	st->room = st->writing < st->write_slots;
	if (st->room || st->batch_max <= 1)
		return;
	now = mono_ms();
	st->room = true;
	for (int i = 0; i < st->npool; i++) {
		const struct pg_conn *c = &st->conns[i];

		if (c->write_slot && now - c->write_since_ms < STORE_PG_WRITE_STALL_MS)
			st->room = false;
	}
}

bool
store_pg_held(const struct store_pg *st, const struct pg_op *op)
{
	return op->kind == OP_WRITE && st->batch_max > 1 && (!st->room || cat_busy(st, op));
}

static bool
in_list(const uint64_t *keys, size_t n, uint64_t key)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i] == key)
			return true;
	return false;
}

static void
put_i32(char **p, uint32_t v)
{
	v = htonl(v);
	memcpy(*p, &v, 4);
	*p += 4;
}

static void
put_i64(char **p, int64_t v)
{
	put_i32(p, (uint32_t)((uint64_t)v >> 32));
	put_i32(p, (uint32_t)v);
}

/* A one-dimensional array header: ndim, has-null flag, element type,
 * length, lower bound. */
static void
put_array_header(char **p, bool nulls, uint32_t oid, int n)
{
	put_i32(p, 1);
	put_i32(p, nulls ? 1 : 0);
	put_i32(p, oid);
	put_i32(p, (uint32_t)n);
	put_i32(p, 1);
}

/* The six array parameters of write_batch into b->buf. 0 or -1. */
static int
batch_params(struct pg_op *b)
{
	size_t len[6], total = 0;
	bool nometa = false, noexp = false;
	char *p, *start[6];
	int n = b->nmembers, i = 0;

	for (int a = 0; a < 6; a++)
		len[a] = 20;
	for (struct pg_op *m = b->members; m != NULL; m = m->next) {
		len[0] += 4 + 16;
		len[1] += 4 + strlen(m->values[1]);
		len[2] += 4 + strlen(m->values[2]);
		len[3] += 4 + 1 + strlen(m->values[3]);
		len[4] += 4 + (m->values[4] != NULL ? 1 + strlen(m->values[4]) : 0);
		len[5] += 4 + (m->values[5] != NULL ? 8 : 0);
		nometa |= m->values[4] == NULL;
		noexp |= m->values[5] == NULL;
	}
	for (int a = 0; a < 6; a++) {
		if (len[a] > INT32_MAX)
			return -1;
		total += len[a];
	}
	if (total > b->bufcap) {
		char *nb = realloc(b->buf, total);

		if (nb == NULL)
			return -1;
		b->buf = nb;
		b->bufcap = total;
	}
	p = b->buf;
	start[0] = p;
	put_array_header(&p, false, OID_UUID, n);
	for (struct pg_op *m = b->members; m != NULL; m = m->next) {
		put_i32(&p, 16);
		memcpy(p, m->uuid, 16);
		p += 16;
	}
	for (int a = 1; a <= 2; a++) {
		start[a] = p;
		put_array_header(&p, false, OID_TEXT, n);
		for (struct pg_op *m = b->members; m != NULL; m = m->next) {
			size_t l = strlen(m->values[a]);

			put_i32(&p, (uint32_t)l);
			memcpy(p, m->values[a], l);
			p += l;
		}
	}
	for (int a = 3; a <= 4; a++) {
		start[a] = p;
		put_array_header(&p, a == 4 && nometa, OID_JSONB, n);
		for (struct pg_op *m = b->members; m != NULL; m = m->next) {
			size_t l;

			if (m->values[a] == NULL) {
				put_i32(&p, UINT32_MAX); /* -1: NULL */
				continue;
			}
			l = strlen(m->values[a]);
			put_i32(&p, (uint32_t)(l + 1));
			*p++ = 1; /* jsonb's binary format: a version byte, then the text */
			memcpy(p, m->values[a], l);
			p += l;
		}
	}
	start[5] = p;
	put_array_header(&p, noexp, OID_INT8, n);
	for (struct pg_op *m = b->members; m != NULL; m = m->next) {
		if (m->values[5] == NULL) {
			put_i32(&p, UINT32_MAX);
			continue;
		}
		put_i32(&p, 8);
		put_i64(&p, strtoll(m->values[5], NULL, 10));
	}
	for (i = 0; i < 6; i++) {
		b->values[i] = start[i];
		b->lens[i] = (int)len[i];
	}
	b->nparams = 6;
	b->lengths = b->lens;
	b->formats = binary_formats;
	return 0;
}

/* Joins the queued writes that may go with head (already off the queue)
 * into one OP_BATCH; head alone when none may, or when the batch cannot be
 * made (they go back to the queue, in order). */
static struct pg_op *
batch_collect(struct store_pg *st, struct pg_op *head)
{
	uint64_t behind[64];
	size_t nbehind = 0, bytes = head->wbytes;
	struct pg_op *prev = NULL, *op, *next, *first = head, **tail = &head->next;
	struct pg_op *b;
	int n = 1, scanned = 0, stmt;

	for (op = st->qhead; op != NULL && n < st->batch_max && scanned < STORE_PG_SCAN_MAX; op = next, scanned++) {
		next = op->next;
		if (op->kind != OP_WRITE || op->stmt != head->stmt) {
			prev = op;
			continue;
		}
		if (!op->solo && op->batchable && !cat_busy(st, op) && bytes + op->wbytes <= st->batch_bytes &&
		    !in_list(behind, nbehind, op->catkey)) {
			unlink_after(st, prev, op);
			*tail = op;
			tail = &op->next;
			bytes += op->wbytes;
			n++;
			continue;
		}
		/* left behind: so is everything later of its category */
		if (!in_list(behind, nbehind, op->catkey)) {
			if (nbehind == sizeof(behind) / sizeof(behind[0]))
				break;
			behind[nbehind++] = op->catkey;
		}
		prev = op;
	}
	if (n == 1)
		return head;
	b = store_pg_op_get();
	stmt = store_pg_stmt_get(st, st->stmts[head->stmt].ns, V_WRITE_BATCH);
	if (b != NULL) {
		b->kind = OP_BATCH;
		b->stmt = stmt;
		b->members = first;
		b->nmembers = n;
		b->deadline_ms = head->deadline_ms;
	}
	if (b == NULL || stmt < 0 || batch_params(b) < 0) {
		/* back in their order, before anything they were taken past */
		struct pg_op *rest = head->next;

		if (b != NULL) {
			b->members = NULL;
			store_pg_op_put(b);
		}
		head->next = NULL;
		while (rest != NULL) {
			struct pg_op *m = rest, *last = NULL;

			/* push the last one first */
			for (m = rest; m->next != NULL; last = m, m = m->next)
				;
			if (last != NULL)
				last->next = NULL;
			else
				rest = NULL;
			store_pg_queue_push_front(st, m);
		}
		return head;
	}
	return b;
}

bool
store_pg_runnable(struct store_pg *st)
{
	int scanned = 0;

	store_pg_write_room(st);
	for (const struct pg_op *op = st->qhead; op != NULL && scanned < STORE_PG_SCAN_MAX; op = op->next, scanned++)
		if (!store_pg_held(st, op))
			return true;
	return false;
}

static void
arm_stall(struct store_pg *st)
{
	struct timeval tv = {STORE_PG_WRITE_STALL_MS / 1000, (STORE_PG_WRITE_STALL_MS % 1000) * 1000};

	if (!evtimer_pending(st->ev_stall, NULL) && evtimer_add(st->ev_stall, &tv) != 0)
		log_error("store_pg: cannot arm the write stall timer");
}

struct pg_op *
store_pg_take(struct store_pg *st)
{
	struct pg_op *prev = NULL, *op = st->qhead;
	int scanned = 0;

	store_pg_write_room(st);
	while (op != NULL && store_pg_held(st, op)) {
		if (!st->room)
			arm_stall(st);
		if (++scanned == STORE_PG_SCAN_MAX)
			return NULL;
		prev = op;
		op = op->next;
	}
	if (op == NULL)
		return NULL;
	unlink_after(st, prev, op);
	if (op->kind != OP_WRITE || st->batch_max <= 1 || op->solo || !op->batchable)
		return op;
	return batch_collect(st, op);
}

void
store_pg_requeue(struct store_pg *st, struct pg_op *op)
{
	struct pg_op *m, *last;

	if (op->kind != OP_BATCH) {
		store_pg_queue_push_front(st, op);
		return;
	}
	while (op->members != NULL) {
		last = NULL;
		for (m = op->members; m->next != NULL; last = m, m = m->next)
			;
		if (last != NULL)
			last->next = NULL;
		else
			op->members = NULL;
		store_pg_queue_push_front(st, m);
	}
	store_pg_op_put(op);
}

void
store_pg_fail_all(struct pg_op *op, enum store_status status, const char *msg)
{
	struct pg_op *m, *next;

	if (op->kind != OP_BATCH) {
		store_pg_op_fail(op, status, msg);
		return;
	}
	m = op->members;
	op->members = NULL;
	store_pg_op_put(op);
	for (; m != NULL; m = next) {
		next = m->next;
		m->next = NULL;
		store_pg_op_fail(m, status, msg);
	}
}

/* ---- results --------------------------------------------------------------------- */

/* One row per write, numbered 1..n in order. */
static bool
batch_rows_ok(const PGresult *r, int n)
{
	if (PQntuples(r) != n || PQnfields(r) != 5)
		return false;
	for (int i = 0; i < n; i++)
		if (strtol(PQgetvalue(r, i, 0), NULL, 10) != i + 1)
			return false;
	return true;
}

int
store_pg_batch_done(struct pg_conn *c, struct pg_op *op, PGresult *r)
{
	struct store_pg *st = c->st;
	struct pg_op *m = op->members, *next;
	struct store_reply rep;
	bool stale = false, failed = false;
	int stale_stmt, n = op->nmembers;

	memset(&rep, 0, sizeof(rep));
	if (r == NULL) {
		rep.status = ST_ERROR;
		rep.error = "no result from the database";
	} else if (store_pg_is_error(r)) {
		store_pg_reply_error(c, op, r, &rep, &stale);
		failed = rep.status != ST_UNAVAILABLE;
	} else if (!batch_rows_ok(r, n)) {
		/* committed, but we cannot tell who got what */
		rep.status = ST_ERROR;
		rep.error = "write_batch returned an unexpected result";
	}
	stale_stmt = stale ? op->stmt : -1;
	op->members = NULL;
	store_pg_op_put(op);
	if (rep.status != ST_OK && !failed) {
		/* unknown outcome, or a connection on its way out (the batch did
		 * not commit, but nothing can write it now either) */
		store_pg_keys_release(c);
		for (; m != NULL; m = next) {
			next = m->next;
			m->next = NULL;
			store_pg_op_fail(m, rep.status, rep.error);
		}
		return stale_stmt;
	}
	if (rep.status != ST_OK) {
		/* Nothing of it was written. One by one, each gets its own
		 * answer (also when only write_batch is missing: then the
		 * one-message path says whether the namespace exists). */
		log_debug("write batch of %d failed (%s); writing them one by one", n, rep.error);
		if (st->stats != NULL)
			st->stats->write_batch_retries++;
		for (struct pg_op *x = m; x != NULL; x = x->next)
			x->solo = true;
		c->retry = m;
		return stale_stmt;
	}
	stats_write_batch(st->stats, (uint64_t)n);
	/* committed: the categories are free before anyone hears of it */
	store_pg_keys_release(c);
	for (int i = 0; m != NULL; m = next, i++) {
		next = m->next;
		m->next = NULL;
		memset(&rep, 0, sizeof(rep));
		if (!PQgetisnull(r, i, 1)) {
			rep.status = ST_OK;
			rep.position = strtoll(PQgetvalue(r, i, 1), NULL, 10);
			rep.global_position = strtoll(PQgetvalue(r, i, 2), NULL, 10);
		} else if (PQgetvalue(r, i, 4)[0] == 't') {
			rep.status = ST_MSG_EXISTS;
			rep.error = "duplicate message id";
		} else {
			rep.status = ST_CONFLICT;
			rep.actual_version = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		}
		store_pg_op_complete(m, &rep);
	}
	return stale_stmt;
}
