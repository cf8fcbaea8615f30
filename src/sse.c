/*
 * GET /subscribe on one worker (SPEC 6, D6, D10, D13).
 *
 * A subscription is registered first (so nothing written from then on can
 * be missed), answers ": ready", then catches up from the store in pages of
 * 1000 until a short page, and only then follows the write ring live. Live
 * entries that arrive during the catch-up are only remembered (seen_max):
 * the catch-up repeats until it has covered everything seen, so the
 * boundary has neither a gap nor a duplicate. Stream subscriptions are
 * exact and in order (a position gap in the ring, from concurrent writers
 * on other workers, is filled from the store); category and all
 * subscriptions deliver every write once, de-duplicated by global position
 * against the catch-up.
 *
 * Slow clients: while a subscriber's output buffer is over --sse-buffer,
 * live pokes coalesce per stream to the newest (a pooled poke per stream,
 * at most SSE_PEND_MAX streams; beyond that the subscriber forgets them and
 * catches up from the store once the client drains). Memory per subscriber
 * is therefore bounded, and the newest position of every stream always
 * reaches the client. Catch-up pages stop at the cap too and resume from
 * the store when the client has read what it was sent.
 *
 * A worker overrun by the ring, or told to resync by the cross-host
 * listener, catches every subscriber up from the store.
 */
#include "autoconf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "auth.h"
#include "config.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "notify_pg.h"
#include "ring.h"
#include "shm.h"
#include "sse.h"
#include "store.h"
#include "wbuf.h"
#include "worker.h"

#define SUB_MAGIC 0x53554253u  /* "SUBS" */
#define POKE_MAGIC 0x504f4b45u /* "POKE" */
#define SSE_PAGE 1000          /* catch-up page (SPEC 6.3, paged per D6) */
#define SSE_PEND_MAX 64        /* coalesced streams per slow subscriber */
#define SSE_CU_MAX 16          /* catch-up queries in flight per worker */
#define SSE_NAME_INLINE 48
#define SSE_NAME_MAX 1024      /* as every other name (D14) */

enum sub_kind { SUB_STREAM = 'S', SUB_CATEGORY = 'C', SUB_ALL = 'A' };

/* A poke held back for a slow subscriber: the newest of one stream. */
struct sse_poke {
	uint32_t magic;
	TAILQ_ENTRY(sse_poke) link;
	int64_t position, gpos;
	size_t len;
	char *name; /* buf, or malloc'd when longer */
	char buf[SSE_NAME_INLINE];
};

struct sse_sub {
	uint32_t magic;
	struct sse *sse;
	struct http_req *req; /* NULL once the stream is over */
	LIST_ENTRY(sse_sub) hlink;
	TAILQ_ENTRY(sse_sub) link;
	TAILQ_ENTRY(sse_sub) qlink;
	TAILQ_HEAD(, sse_poke) pend;
	uint64_t key; /* hash of (kind, namespace, name) */
	int64_t start_us;
	char kind;
	char ns[64];
	char *name;
	size_t name_len;
	char name_buf[SSE_NAME_INLINE];
	uint32_t ns_slot;
	uint64_t ns_gen;
	int64_t member, size; /* consumer group when size > 0 */
	int64_t start;        /* the position parameter, at least 0 */
	/* stream: next position to deliver; category/all: one past the
	 * highest global position delivered (where a catch-up starts) */
	int64_t next;
	int64_t floor;    /* category/all: live pokes at or below came from a catch-up */
	int64_t reg_last; /* all: newest global position of the namespace at registration */
	int64_t seen_max; /* live entries seen while catching up */
	struct store_category_req q;
	uint16_t npend;
	bool registered, counted, live, queued, later, querying, again, wait_drain, ended, dead;
};

LIST_HEAD(sse_bucket, sse_sub);
TAILQ_HEAD(sse_queue, sse_sub);

struct sse {
	struct worker *w;
	struct pool sub_pool, poke_pool;
	struct event *ev_ring, *ev_local, *ev_keepalive, *ev_kick, *ev_retry;
	struct ring_cursor cur;
	struct sse_bucket *buckets;
	uint32_t nbuckets;
	TAILQ_HEAD(, sse_sub) subs;
	uint32_t nsubs;
	struct sse_queue queue; /* waiting for a catch-up query */
	struct sse_queue later; /* catch-up failed: retried by ev_retry */
	uint32_t running;
	struct wbuf tmp; /* the chunk being built */
	struct wbuf pk;  /* the poke of the ring entry being dispatched */
	bool pk_ready;
	bool draining, stopped;
	struct notify_pg *listener;
};

static void begin_catchup(struct sse_sub *sub);
static void on_drained(void *arg);

/* ---- small helpers ------------------------------------------------------- */

static struct stats *
st_of(struct sse *sse)
{
	return &sse->w->me->st;
}

static bool
over_cap(const struct sse_sub *sub)
{
	return http_stream_queued(sub->req) + sub->sse->tmp.len >= (size_t)sub->sse->w->cfg->sse_buffer;
}

static uint64_t
key_hash(struct sse *sse, char kind, const char *ns, size_t nslen, const char *name, size_t len)
{
	char k[2 + 64 + SSE_NAME_MAX];

	if (nslen > 63)
		nslen = 63;
	if (len > SSE_NAME_MAX)
		len = SSE_NAME_MAX;
	k[0] = kind;
	memcpy(k + 1, ns, nslen);
	k[1 + nslen] = '\0';
	memcpy(k + 2 + nslen, name, len);
	return ring_hash(sse->w->shm, k, 2 + nslen + len);
}

static bool
sub_matches(const struct sse_sub *sub, uint64_t key, char kind, const char *ns, size_t nslen, const char *name,
            size_t len)
{
	return sub->key == key && sub->kind == kind && sub->name_len == len && strlen(sub->ns) == nslen &&
	       memcmp(sub->ns, ns, nslen) == 0 && memcmp(sub->name, name, len) == 0;
}

static void
poke_text(struct wbuf *b, const char *stream, size_t len, int64_t position, int64_t gpos)
{
	jw_lit(b, "event: poke\ndata: {\"stream\":");
	jw_str(b, stream, len);
	jw_lit(b, ",\"position\":");
	jw_i64(b, position);
	jw_lit(b, ",\"globalPosition\":");
	jw_i64(b, gpos);
	jw_lit(b, "}\n\n");
}

/* Sends len bytes as one chunk: straight to the socket when nothing is
 * queued (a fan-out to many subscribers costs one writev each), the rest
 * queued on the connection. */
static void
send_bytes(struct sse_sub *sub, const char *data, size_t len)
{
	if (len == 0 || sub->req == NULL)
		return;
	http_stream_send(sub->req, data, len);
}

/* Sends what was built in sse->tmp as one chunk. */
static void
send_tmp(struct sse_sub *sub)
{
	struct wbuf *tmp = &sub->sse->tmp;

	if (tmp->len == 0)
		return;
	send_bytes(sub, tmp->p, tmp->len);
	tmp->len = 0;
}

/* ---- the subscriber table ---------------------------------------------- */

static struct sse_bucket *
bucket_of(struct sse *sse, uint64_t key)
{
	return &sse->buckets[key & (sse->nbuckets - 1)];
}

static void
table_grow(struct sse *sse)
{
	uint32_t n = sse->nbuckets * 2;
	struct sse_bucket *nb = calloc(n, sizeof(*nb));
	struct sse_sub *sub;

	if (nb == NULL)
		return; /* longer chains, still correct */
	for (uint32_t i = 0; i < sse->nbuckets; i++)
		while ((sub = LIST_FIRST(&sse->buckets[i])) != NULL) {
			LIST_REMOVE(sub, hlink);
			LIST_INSERT_HEAD(&nb[sub->key & (n - 1)], sub, hlink);
		}
	free(sse->buckets);
	sse->buckets = nb;
	sse->nbuckets = n;
}

/* ---- pending (coalesced) pokes -------------------------------------------- */

static void
pend_clear(struct sse_sub *sub)
{
	struct sse_poke *p;

	while ((p = TAILQ_FIRST(&sub->pend)) != NULL) {
		TAILQ_REMOVE(&sub->pend, p, link);
		if (p->name != p->buf)
			free(p->name);
		p->magic = 0;
		pool_put(&sub->sse->poke_pool, p);
	}
	sub->npend = 0;
}

/* Too many distinct streams waiting: forget them and catch up from the
 * store, from the oldest one not sent, once the client has drained. */
static void
pend_overflow(struct sse_sub *sub, int64_t gpos)
{
	struct sse_poke *p;
	int64_t from = gpos;

	TAILQ_FOREACH(p, &sub->pend, link)
		if (p->gpos < from)
			from = p->gpos;
	st_of(sub->sse)->sse_coalesced += sub->npend;
	pend_clear(sub);
	if (from < sub->next)
		sub->next = from;
	sub->live = false;
	sub->wait_drain = true;
}

static void
coalesce(struct sse_sub *sub, const char *stream, size_t len, int64_t position, int64_t gpos)
{
	struct sse *sse = sub->sse;
	struct sse_poke *p;

	TAILQ_FOREACH(p, &sub->pend, link) {
		if (p->len == len && memcmp(p->name, stream, len) == 0) {
			if (position > p->position) {
				p->position = position;
				p->gpos = gpos;
			}
			st_of(sse)->sse_coalesced++;
			return;
		}
	}
	if (sub->npend >= SSE_PEND_MAX || (p = pool_get(&sse->poke_pool)) == NULL)
		return pend_overflow(sub, gpos);
	p->magic = POKE_MAGIC;
	p->name = len <= sizeof(p->buf) ? p->buf : malloc(len);
	if (p->name == NULL) {
		pool_put(&sse->poke_pool, p);
		return pend_overflow(sub, gpos);
	}
	memcpy(p->name, stream, len);
	p->len = len;
	p->position = position;
	p->gpos = gpos;
	TAILQ_INSERT_TAIL(&sub->pend, p, link);
	sub->npend++;
}

/* Writes the held pokes, oldest global position first. */
static void
pend_flush(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;

	while (!TAILQ_EMPTY(&sub->pend)) {
		struct sse_poke *p, *min = TAILQ_FIRST(&sub->pend);
		TAILQ_FOREACH(p, &sub->pend, link)
			if (p->gpos < min->gpos)
				min = p;
		TAILQ_REMOVE(&sub->pend, min, link);
		poke_text(&sse->tmp, min->name, min->len, min->position, min->gpos);
		st_of(sse)->sse_pokes++;
		if (min->name != min->buf)
			free(min->name);
		min->magic = 0;
		pool_put(&sse->poke_pool, min);
	}
	sub->npend = 0;
	send_tmp(sub);
}

/* ---- catch-up from the store ---------------------------------------------- */

static void
enqueue(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;

	if (!sub->queued && !sub->querying && !sub->wait_drain) {
		TAILQ_INSERT_TAIL(&sse->queue, sub, qlink);
		sub->queued = true;
		event_active(sse->ev_kick, EV_TIMEOUT, 0);
	}
}

static void
unqueue(struct sse_sub *sub)
{
	if (!sub->queued)
		return;
	TAILQ_REMOVE(sub->later ? &sub->sse->later : &sub->sse->queue, sub, qlink);
	sub->queued = false;
	sub->later = false;
}

static void
go_live(struct sse_sub *sub)
{
	sub->live = true;
	sub->seen_max = INT64_MIN;
	if (sub->kind != SUB_STREAM && sub->next - 1 > sub->floor)
		sub->floor = sub->next - 1;
}

/* Leaves live mode; the store fills in from sub->next. */
static void
begin_catchup(struct sse_sub *sub)
{
	struct sse_poke *p;

	/* Held pokes were not sent: the catch-up must cover them. */
	TAILQ_FOREACH(p, &sub->pend, link) {
		int64_t at = sub->kind == SUB_STREAM ? p->position : p->gpos;
		if (at < sub->next)
			sub->next = at;
	}
	pend_clear(sub);
	if (sub->kind == SUB_ALL && sub->next <= sub->reg_last)
		sub->next = sub->reg_last + 1;
	if (sub->live) {
		sub->live = false;
		sub->seen_max = INT64_MIN;
	}
	enqueue(sub);
}

static void sub_free(struct sse_sub *sub);
static void sub_end(struct sse_sub *sub);

static void
catchup_done(const struct store_reply *r, void *arg)
{
	struct sse_sub *sub = arg;
	struct sse *sse = sub->sse;
	bool paused = false;

	if (sub->magic != SUB_MAGIC)
		abort();
	sse->running--;
	sub->querying = false;
	if (sub->dead) {
		sub_free(sub);
		goto out;
	}
	if (sub->ended || sse->stopped)
		goto out;
	if (r->status == ST_NS_NOT_FOUND) {
		log_info("subscription ended: namespace %s no longer exists", sub->ns);
		sub_end(sub);
		goto out;
	}
	if (r->status != ST_OK) {
		log_warn("subscription catch-up failed (retrying in 1 s): %s", r->error ? r->error : "store error");
		TAILQ_INSERT_TAIL(&sse->later, sub, qlink);
		sub->queued = sub->later = true;
		if (!evtimer_pending(sse->ev_retry, NULL)) {
			struct timeval one = {1, 0};
			evtimer_add(sse->ev_retry, &one);
		}
		goto out;
	}
	for (size_t i = 0; i < r->nrows; i++) {
		const struct store_msg *m = &r->msgs[i];

		if (over_cap(sub)) {
			paused = true;
			break;
		}
		if (sub->kind == SUB_STREAM) {
			if (m->position < sub->next)
				continue;
			poke_text(&sse->tmp, sub->name, sub->name_len, m->position, m->global_position);
			sub->next = m->position + 1;
		} else {
			if (m->global_position < sub->next)
				continue;
			poke_text(&sse->tmp, m->stream, m->stream_len, m->position, m->global_position);
			sub->next = m->global_position + 1;
		}
		st_of(sse)->sse_pokes++;
	}
	send_tmp(sub);
	if (paused && over_cap(sub))
		sub->wait_drain = true; /* on_drained resumes from sub->next */
	else if (paused || r->nrows >= SSE_PAGE || sub->again || sub->seen_max >= sub->next) {
		/* The socket took the page (paused but not full), more pages, or
		 * live writes arrived that this page may not cover. */
		sub->again = false;
		enqueue(sub);
	} else {
		go_live(sub);
	}
out:
	if (!sse->stopped)
		event_active(sse->ev_kick, EV_TIMEOUT, 0);
}

/* Issues sub's next catch-up query: 0, or -1 when the store is busy. */
static int
catchup_query(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;
	struct store *st = sse->w->store;
	int rc;

	if (sub->kind == SUB_STREAM) {
		rc = st->ops->get_stream(st, sub->ns, sub->name, false, sub->next, SSE_PAGE, catchup_done, sub);
	} else {
		/* A category with '-' or a negative member matches nothing. */
		if ((sub->kind == SUB_CATEGORY && memchr(sub->name, '-', sub->name_len) != NULL) ||
		    (sub->size > 0 && sub->member < 0)) {
			go_live(sub);
			return 0;
		}
		sub->q.category = sub->kind == SUB_CATEGORY ? sub->name : "";
		sub->q.from_gpos = sub->next;
		sub->q.limit = SSE_PAGE;
		sub->q.correlation = NULL;
		sub->q.member = sub->size > 0 ? sub->member : 0;
		sub->q.size = sub->size > 0 ? sub->size : 0;
		rc = st->ops->get_category(st, sub->ns, &sub->q, catchup_done, sub);
	}
	if (rc != 0)
		return -1;
	sub->querying = true;
	sse->running++;
	st_of(sse)->sse_catchups++;
	return 0;
}

/* Starts queued catch-ups, a few at a time so requests keep their share
 * of the database connections. */
static void
kick(evutil_socket_t fd, short what, void *arg)
{
	struct sse *sse = arg;
	struct sse_sub *sub;

	while (sse->running < SSE_CU_MAX && (sub = TAILQ_FIRST(&sse->queue)) != NULL) {
		TAILQ_REMOVE(&sse->queue, sub, qlink);
		sub->queued = false;
		if (sub->ended)
			continue;
		if (over_cap(sub)) {
			sub->wait_drain = true;
			continue;
		}
		if (catchup_query(sub) != 0) {
			/* The store queue is full: try again shortly. */
			struct timeval t = {0, 100000};
			TAILQ_INSERT_HEAD(&sse->queue, sub, qlink);
			sub->queued = true;
			evtimer_add(sse->ev_retry, &t);
			break;
		}
	}
}

static void
retry(evutil_socket_t fd, short what, void *arg)
{
	struct sse *sse = arg;
	struct sse_sub *sub;

	while ((sub = TAILQ_FIRST(&sse->later)) != NULL) {
		TAILQ_REMOVE(&sse->later, sub, qlink);
		sub->later = false;
		TAILQ_INSERT_TAIL(&sse->queue, sub, qlink);
	}
	kick(-1, 0, sse);
}

/* The client has read everything it was sent. */
static void
on_drained(void *arg)
{
	struct sse_sub *sub = arg;

	if (sub->magic != SUB_MAGIC || sub->ended || sub->req == NULL)
		return;
	if (sub->npend > 0)
		pend_flush(sub);
	if (sub->wait_drain && !over_cap(sub)) {
		sub->wait_drain = false;
		enqueue(sub);
	}
}

/* ---- live delivery from the ring ---------------------------------------- */

static void
emit_live(struct sse_sub *sub, const struct ring_rec *r)
{
	struct sse *sse = sub->sse;
	size_t n;

	if (sub->npend > 0 || over_cap(sub))
		return coalesce(sub, r->stream, r->stream_len, r->position, r->gpos);
	if (!sse->pk_ready) {
		sse->pk.len = 0;
		poke_text(&sse->pk, r->stream, r->stream_len, r->position, r->gpos);
		sse->pk_ready = true;
	}
	n = sse->pk.len;
	send_bytes(sub, sse->pk.p, n);
	st_of(sse)->sse_pokes++;
}

static void
deliver_stream(struct sse_sub *sub, const struct ring_rec *r)
{
	if (!sub->live) {
		if (r->position > sub->seen_max)
			sub->seen_max = r->position;
		return;
	}
	if (r->position < sub->next)
		return;
	if (r->position > sub->next && sub->npend == 0 && !over_cap(sub)) {
		/* A gap: the missing writes are still on their way from another
		 * worker, or were lost to an overrun. The store has them. */
		begin_catchup(sub);
		sub->seen_max = r->position;
		return;
	}
	emit_live(sub, r);
	sub->next = r->position + 1;
}

static void
deliver_gpos(struct sse_sub *sub, const struct ring_rec *r)
{
	if (!sub->live) {
		if (r->gpos > sub->seen_max)
			sub->seen_max = r->gpos;
		return;
	}
	if (r->gpos <= sub->floor)
		return;
	emit_live(sub, r);
	if (r->gpos >= sub->next)
		sub->next = r->gpos + 1;
}

static void
on_rec(const struct ring_rec *r, void *arg)
{
	struct sse *sse = arg;
	struct sse_sub *sub;
	size_t clen = sn_category_len(r->stream, r->stream_len);
	uint64_t k;

	sse->pk_ready = false;
	k = key_hash(sse, SUB_STREAM, r->ns, r->ns_len, r->stream, r->stream_len);
	LIST_FOREACH(sub, bucket_of(sse, k), hlink)
		if (!sub->ended && sub_matches(sub, k, SUB_STREAM, r->ns, r->ns_len, r->stream, r->stream_len))
			deliver_stream(sub, r);
	k = key_hash(sse, SUB_CATEGORY, r->ns, r->ns_len, r->stream, clen);
	LIST_FOREACH(sub, bucket_of(sse, k), hlink)
		if (!sub->ended && sub_matches(sub, k, SUB_CATEGORY, r->ns, r->ns_len, r->stream, clen) &&
		    (sub->size <= 0 || sn_in_group(r->stream, r->stream_len, sub->member, sub->size)))
			deliver_gpos(sub, r);
	k = key_hash(sse, SUB_ALL, r->ns, r->ns_len, "", 0);
	LIST_FOREACH(sub, bucket_of(sse, k), hlink)
		if (!sub->ended && sub_matches(sub, k, SUB_ALL, r->ns, r->ns_len, "", 0))
			deliver_gpos(sub, r);
}

/* Entries were lost (overrun) or may have been (listener resync): every
 * subscriber catches up from the store, from where it stands. */
static void
resync_all(struct sse *sse, enum ring_read_result why)
{
	struct sse_sub *sub;

	st_of(sse)->sse_resyncs++;
	if (why == RING_OVERRUN)
		st_of(sse)->sse_overruns++;
	if (why == RING_OVERRUN)
		log_warn("worker %u: overrun by the write ring; %u subscriber(s) catch up from the store",
		         sse->w->slot + 1, sse->nsubs);
	else
		log_info("worker %u: resync requested; %u subscriber(s) catch up from the store", sse->w->slot + 1,
		         sse->nsubs);
	TAILQ_FOREACH(sub, &sse->subs, link) {
		if (sub->ended)
			continue;
		sub->again = true;
		if (sub->live)
			begin_catchup(sub);
	}
}

static void
drain_ring(struct sse *sse)
{
	enum ring_read_result rc;

	if (sse->nsubs == 0)
		return;
	rc = ring_read(sse->w->shm, &sse->cur, on_rec, sse);
	if (rc != RING_OK)
		resync_all(sse, rc);
}

static void
on_ring(evutil_socket_t fd, short what, void *arg)
{
	struct sse *sse = arg;

	ring_ack(sse->w->shm, sse->w->slot);
	drain_ring(sse);
}

void
sse_publish(struct worker *w, const char *ns, uint64_t gen, const char *stream, size_t len, int64_t position,
            int64_t gpos)
{
	struct sse *sse = w->sse;

	ring_append(w->shm, ns, gen, stream, len, position, gpos);
	ring_signal(w->shm, w->slot);
	/* This worker's own subscribers: on the next loop turn, after the I/O
	 * it brings, so the write's reply leaves before a large fan-out. */
	if (sse != NULL && sse->nsubs > 0 && !evtimer_pending(sse->ev_local, NULL)) {
		struct timeval now = {0, 0};
		evtimer_add(sse->ev_local, &now);
	}
}

/* ---- keepalive -------------------------------------------------------------- */

static void
keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct sse *sse = arg;
	struct sse_sub *sub;

	TAILQ_FOREACH(sub, &sse->subs, link) {
		if (sub->ended || over_cap(sub))
			continue;
		jw_lit(&sse->tmp, ": keepalive\n\n");
		send_tmp(sub);
	}
}

/* ---- lifecycle of one subscription ------------------------------------------ */

static void
sub_free(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;

	if (sub->name != sub->name_buf)
		free(sub->name);
	sub->name = NULL;
	sub->magic = 0;
	pool_put(&sse->sub_pool, sub);
}

/* Takes sub out of every table; frees it unless a query still refers to it. */
static void
sub_release(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;

	if (sub->registered) {
		LIST_REMOVE(sub, hlink);
		TAILQ_REMOVE(&sse->subs, sub, link);
		sub->registered = false;
		sse->nsubs--;
		st_of(sse)->sse_subscribers--;
		if (sse->nsubs == 0)
			ring_interest(sse->w->shm, sse->w->slot, false, &sse->cur);
	}
	unqueue(sub);
	if (sub->counted)
		ring_subs_give(sse->w->shm, sse->w->slot, sub->ns_slot, sub->ns_gen);
	sub->counted = false;
	pend_clear(sub);
	if (sub->querying)
		sub->dead = true; /* catchup_done frees it */
	else
		sub_free(sub);
}

/* The connection went away (client gone, error, timeout, worker exit). */
static void
on_close(void *arg)
{
	struct sse_sub *sub = arg;

	sub->req = NULL;
	sub_release(sub);
}

/* Ends the response cleanly (the last chunk) and lets the subscription go. */
static void
sub_end(struct sse_sub *sub)
{
	if (sub->ended)
		return;
	sub->ended = true;
	unqueue(sub);
	pend_clear(sub);
	if (sub->req != NULL)
		http_stream_end(sub->req);
	sub->req = NULL;
	sub_release(sub);
}

static void
reply_error(struct sse_sub *sub, int status, const char *code, const char *message, const char *details)
{
	http_send_error(sub->req, status, code, message, details);
	sub->req = NULL;
	sub_free(sub);
}

/* Registers sub, answers the headers and ": ready", starts the catch-up. */
static void
sub_register(struct sse_sub *sub)
{
	struct sse *sse = sub->sse;
	struct worker *w = sse->w;
	char slot[16], details[64];

	if (sse->draining)
		return reply_error(sub, 503, "SHUTTING_DOWN", "Server is shutting down", NULL);
	sub->ns_gen = ring_ns_generation(w->shm, sub->ns, &sub->ns_slot);
	if (sub->ns_gen == 0)
		return reply_error(sub, 404, "NAMESPACE_NOT_FOUND", "Namespace not found", NULL);
	if (ring_subs_take(w->shm, w->slot, sub->ns_slot, sub->ns_gen, w->cfg->max_subscriptions) != 0) {
		char msg[128];
		st_of(sse)->sse_refused++;
		snprintf(msg, sizeof(msg), "Subscription limit reached: at most %lld live subscriptions per namespace",
		         (long long)w->cfg->max_subscriptions);
		snprintf(details, sizeof(details), "{\"limit\":%lld}", (long long)w->cfg->max_subscriptions);
		return reply_error(sub, 429, "TOO_MANY_SUBSCRIPTIONS", msg, details);
	}
	sub->counted = true;

	/* Entries already in the ring predate this subscription: hand them to
	 * the others first, then register. */
	drain_ring(sse);
	sub->key = key_hash(sse, sub->kind, sub->ns, strlen(sub->ns), sub->name, sub->name_len);
	if (sse->nsubs >= sse->nbuckets)
		table_grow(sse);
	LIST_INSERT_HEAD(bucket_of(sse, sub->key), sub, hlink);
	TAILQ_INSERT_TAIL(&sse->subs, sub, link);
	sub->registered = true;
	if (sse->nsubs++ == 0)
		ring_interest(w->shm, w->slot, true, &sse->cur);
	st_of(sse)->sse_subscribers++;
	if (sub->kind == SUB_ALL)
		sub->reg_last = ring_ns_last_gpos(w->shm, sub->ns_slot, sub->ns_gen);

	snprintf(slot, sizeof(slot), "%u", w->slot + 1);
	http_add_header(sub->req, "Cache-Control", "no-cache");
	http_add_header(sub->req, "Access-Control-Allow-Origin", "*");
	http_add_header(sub->req, "X-Accel-Buffering", "no");
	http_add_header(sub->req, "X-EventoDB-Worker", slot);
	if (http_stream_begin(sub->req, 200, "text/event-stream") != 0) {
		/* the client left meanwhile */
		sub->req = NULL;
		sub_release(sub);
		return;
	}
	http_on_close(sub->req, on_close, sub);
	http_on_drain(sub->req, on_drained, sub);
	http_stream_tune(sub->req, (int)w->cfg->sse_keepalive);

	jw_lit(&sse->tmp, ": ready\n\n");
	send_tmp(sub);
	if (http_req_method(sub->req) == HTTPP_HEAD)
		return sub_end(sub); /* the head is all a HEAD gets */
	if (sub->kind == SUB_ALL) {
		/* all=true: live writes only (SPEC 6.3, 10.21) */
		sub->next = sub->start;
		sub->floor = sub->start - 1;
		go_live(sub);
	} else {
		enqueue(sub);
	}
}

static void
autocreated(void *arg, const char *token, const char *error)
{
	struct sse_sub *sub = arg;

	if (error != NULL)
		return reply_error(sub, 500, "BACKEND_ERROR", error, NULL);
	http_add_header(sub->req, "X-EventoDB-Token", token);
	sub_register(sub);
}

/* ---- the request ------------------------------------------------------------ */

/* Go's strconv.ParseInt(s, 10, 64). */
static bool
parse_i64(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, lim;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (*s == '\0')
		return false;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (lim - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static bool
name_ok(const char *s, size_t len)
{
	return len >= 1 && len <= SSE_NAME_MAX && memchr(s, '\0', len) == NULL && utf8_valid(s, len);
}

/* A query parameter: 1 found, 0 absent, -1 too long. */
static int
qparam(struct http_req *req, const char *name, char *out, size_t cap, size_t *len)
{
	*len = 0;
	return http_req_param(req, name, out, cap, len);
}

void
sse_handle(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	struct sse *sse = w->sse;
	int64_t start_us = http_req_start_us(req);
	char stream[SSE_NAME_MAX + 1], category[SSE_NAME_MAX + 1], num[64];
	size_t slen = 0, clen = 0, nlen;
	bool has_stream, has_cat, all = false;
	int64_t position = 0, member = 0, size = 0;
	struct auth_result a;
	struct sse_sub *sub;
	int rc;

	auth_check(w, req, &a);
	if (a.status != 0)
		return http_send_error(req, a.status, a.code, a.message, a.details);
	if (sse == NULL || sse->draining)
		return http_send_error(req, 503, "SHUTTING_DOWN", "Server is shutting down", NULL);

	rc = qparam(req, "stream", stream, sizeof(stream), &slen);
	if (rc < 0)
		return http_send_text(req, 400, "Invalid stream parameter");
	has_stream = rc > 0 && slen > 0;
	rc = qparam(req, "category", category, sizeof(category), &clen);
	if (rc < 0)
		return http_send_text(req, 400, "Invalid category parameter");
	has_cat = rc > 0 && clen > 0;
	if (qparam(req, "all", num, sizeof(num), &nlen) > 0)
		all = strcmp(num, "true") == 0;

	if (!all && !has_stream && !has_cat)
		return http_send_text(req, 400, "Either 'stream', 'category', or 'all=true' parameter required");
	if (all && (has_stream || has_cat))
		return http_send_text(req, 400, "Cannot combine 'all' with 'stream' or 'category'");
	if (has_stream && has_cat)
		return http_send_text(req, 400, "Cannot specify both 'stream' and 'category'");
	rc = qparam(req, "position", num, sizeof(num), &nlen);
	if (rc < 0 || (rc > 0 && nlen > 0 && !parse_i64(num, &position)))
		return http_send_text(req, 400, "Invalid position parameter");
	if (has_cat) {
		rc = qparam(req, "consumer", num, sizeof(num), &nlen);
		if (rc < 0 || (rc > 0 && nlen > 0 && !parse_i64(num, &member)))
			return http_send_text(req, 400, "Invalid consumer parameter");
		rc = qparam(req, "size", num, sizeof(num), &nlen);
		if (rc < 0 || (rc > 0 && nlen > 0 && !parse_i64(num, &size)))
			return http_send_text(req, 400, "Invalid size parameter");
		if ((member > 0 || size > 0) && (size == 0 || member >= size))
			return http_send_text(req, 400, "Invalid consumer group: member must be < size");
	}
	if (has_stream && !name_ok(stream, slen))
		return http_send_text(req, 400, "Invalid stream parameter");
	if (has_cat && !name_ok(category, clen))
		return http_send_text(req, 400, "Invalid category parameter");

	sub = pool_get(&sse->sub_pool);
	if (sub == NULL)
		return http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
	memset(sub, 0, sizeof(*sub));
	sub->magic = SUB_MAGIC;
	sub->sse = sse;
	sub->req = req;
	sub->start_us = start_us;
	TAILQ_INIT(&sub->pend);
	sub->kind = all ? SUB_ALL : has_stream ? SUB_STREAM : SUB_CATEGORY;
	/* An authenticated namespace is in the shared table, so it fits. */
	memcpy(sub->ns, a.ns, strnlen(a.ns, sizeof(sub->ns) - 1));
	sub->name_len = all ? 0 : has_stream ? slen : clen;
	sub->name = sub->name_len < sizeof(sub->name_buf) ? sub->name_buf : malloc(sub->name_len + 1);
	if (sub->name == NULL) {
		sub->name = sub->name_buf;
		sub_free(sub);
		return http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
	}
	memcpy(sub->name, all ? "" : has_stream ? stream : category, sub->name_len);
	sub->name[sub->name_len] = '\0';
	sub->start = position < 0 ? 0 : position;
	sub->next = sub->start;
	sub->floor = sub->start - 1;
	sub->seen_max = INT64_MIN;
	sub->member = member;
	sub->size = has_cat ? size : 0;

	if (a.autocreate) {
		/* Test mode: the token's namespace is created first (SPEC D2). */
		int arc = auth_autocreate(w, &a, autocreated, sub);
		if (arc != 0) {
			char msg[160];
			sub_free(sub);
			if (arc != AUTH_NS_LIMIT)
				return http_send_error(req, 503, "BACKEND_UNAVAILABLE", "Database unavailable", NULL);
			auth_ns_limit_message(w, msg, sizeof(msg));
			return http_send_error(req, 507, "NAMESPACE_LIMIT", msg, NULL);
		}
		return;
	}
	sub_register(sub);
}

/* ---- worker lifecycle ---------------------------------------------------------- */

struct sse *
sse_start(struct worker *w)
{
	struct sse *sse = calloc(1, sizeof(*sse));
	struct timeval ka = {(time_t)w->cfg->sse_keepalive, 0};

	if (sse == NULL)
		return NULL;
	sse->w = w;
	TAILQ_INIT(&sse->subs);
	TAILQ_INIT(&sse->queue);
	TAILQ_INIT(&sse->later);
	pool_init(&sse->sub_pool, "sse_sub", sizeof(struct sse_sub), 1024, NULL);
	pool_init(&sse->poke_pool, "sse_poke", sizeof(struct sse_poke), 4096, NULL);
	sse->nbuckets = 256;
	sse->buckets = calloc(sse->nbuckets, sizeof(*sse->buckets));
	sse->ev_ring = event_new(w->base, ring_eventfd(w->shm, w->slot), EV_READ | EV_PERSIST, on_ring, sse);
	sse->ev_local = evtimer_new(w->base, on_ring, sse);
	sse->ev_keepalive = event_new(w->base, -1, EV_PERSIST, keepalive, sse);
	sse->ev_kick = event_new(w->base, -1, 0, kick, sse);
	sse->ev_retry = evtimer_new(w->base, retry, sse);
	if (sse->buckets == NULL || sse->ev_ring == NULL || sse->ev_local == NULL ||
	    sse->ev_keepalive == NULL || sse->ev_kick == NULL || sse->ev_retry == NULL ||
	    event_add(sse->ev_ring, NULL) != 0 || event_add(sse->ev_keepalive, &ka) != 0) {
		log_error("worker %u: cannot set up subscriptions", w->slot + 1);
		return NULL;
	}
	/* A respawned worker starts with no subscribers and no wake-up due. */
	ring_worker_reset(w->shm, w->slot);
	w->sse = sse;
	if (w->slot == 0)
		sse->listener = notify_pg_start(w);
	return sse;
}

void
sse_drain(struct worker *w)
{
	struct sse *sse = w->sse;
	struct sse_sub *sub, *next;

	if (sse == NULL || sse->draining)
		return;
	sse->draining = true;
	if (sse->nsubs > 0)
		log_info("worker %u: ending %u subscription(s)", w->slot + 1, sse->nsubs);
	for (sub = TAILQ_FIRST(&sse->subs); sub != NULL; sub = next) {
		next = TAILQ_NEXT(sub, link);
		sub_end(sub);
	}
}

void
sse_stop(struct worker *w)
{
	struct sse *sse = w->sse;
	struct sse_sub *sub;

	if (sse == NULL)
		return;
	sse->stopped = true;
	notify_pg_stop(sse->listener);
	sse->listener = NULL;
	while ((sub = TAILQ_FIRST(&sse->subs)) != NULL) {
		/* (the connections are gone: their close callbacks ran) */
		sub->req = NULL;
		sub_release(sub);
	}
	event_free(sse->ev_ring);
	event_free(sse->ev_local);
	event_free(sse->ev_keepalive);
	event_free(sse->ev_kick);
	event_free(sse->ev_retry);
	wb_free(&sse->tmp);
	wb_free(&sse->pk);
	free(sse->buckets);
	pool_drain(&sse->poke_pool);
	pool_drain(&sse->sub_pool);
	/* Catch-up queries still queued in the store call back into their
	 * subscribers (marked dead) and into this struct; it stays. */
	if (sse->running == 0) {
		w->sse = NULL;
		free(sse);
	}
}
