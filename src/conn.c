/*
 * The connection layer: every HTTP/1.x connection of a worker, from accept
 * to close, on libevent (an evconnlistener per listening socket, two events
 * per connection) with the request parsed by libhttp-parser (src/httpp.c).
 * One parser owns the framing of every request, bodies included, so nothing
 * can be read two ways (no request smuggling); after any framing error the
 * connection is answered and closed, never re-synchronised.
 *
 * Memory: connections, request buffers and output buffers come from
 * per-worker pools and keep their memory, so the steady state allocates
 * nothing here. Input is read into one worker-wide buffer and parsed from
 * there; only what must wait (the head and body of the current request, a
 * pipelined request behind it, output the socket did not take) is copied.
 * An idle keep-alive connection holds no buffer at all.
 *
 * Output goes straight to the socket with writev when nothing is queued;
 * what the socket does not take is queued and written as it drains.
 *
 * Limits: request target (414), head size and field count (431), body
 * (--max-body, 413), connections per worker (--max-connections, 503), time
 * to receive the head and body progress (--read-timeout, 408), keep-alive
 * idle time (--idle-timeout), pipelined input waiting behind a request,
 * queued output. Every rejection is JSON, sent before the connection
 * closes; closing connections linger briefly (reading and dropping what the
 * client still sends) so the client reads the answer instead of a reset.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "evlib.h"
#include "http.h"
#include "httpp.h"
#include "jsonw.h"
#include "log.h"
#include "pool.h"
#include "shm.h"
#include "wbuf.h"
#include "worker.h"

#define CONN_MAGIC 0x434f4e4eu /* "CONN" */
#define REQ_MAGIC 0x52455155u  /* "REQU" */
#define RBUF_MAGIC 0x52425546u /* "RBUF" */

#define READ_CHUNK (64 * 1024)       /* one read() */
#define URI_MAX 8192                 /* 414 above */
#define HEADERS_MAX 100              /* 431 above */
#define STASH_MAX (64 * 1024)        /* pipelined input kept while a request runs */
#define OUT_HIGH (1024 * 1024)       /* queued output that stops taking requests */
#define LINGER_MS 2000               /* a closing connection drops input this long */
#define LINGER_BYTES (1024 * 1024)   /* ... or this much */
#define STREAM_INPUT_MAX (64 * 1024) /* input a stream (SSE) drops before closing */
#define WRITE_TIMEOUT_S 120          /* no write progress: the peer is gone */
#define FRAMING_SLACK (64 * 1024)    /* chunk framing bytes allowed beyond ... */
#define FRAMING_PER_CHUNK 64         /* ... this much per chunk */
#define REJECT_EXTRA 64              /* refused connections lingering at once */
#define KEEP_HEAD (64 * 1024)        /* pooled buffers keep this much memory */
#define KEEP_BODY (1024 * 1024)
#define KEEP_OUT (256 * 1024)
#define ACCEPT_PAUSE_MIN_MS 50
#define ACCEPT_PAUSE_MAX_MS 500

enum phase {
	PH_IDLE,   /* between requests */
	PH_HEAD,   /* reading a request head */
	PH_BODY,   /* reading its body */
	PH_WAIT,   /* the message is in; a handler has it */
	PH_LINGER, /* answered and closing: dropping input */
};

/* A request's storage, pooled: the head (target, then name\0value\0 pairs,
 * then the path and query as C strings), the body, extra reply headers. */
struct rbuf {
	uint32_t magic;
	struct wbuf head;
	struct wbuf body;
	size_t body_off; /* streamed bodies: bytes consumed at the front */
	struct wbuf extra;
	uint32_t hname[HEADERS_MAX], hval[HEADERS_MAX];
};

/* Queued bytes (pending output, or input waiting behind a request). */
struct obuf {
	struct wbuf b;
	size_t off;
};

struct conn;

enum { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

struct http_req {
	uint32_t magic;
	struct conn *c;
	struct rbuf *rb;
	const struct http_route *route;
	enum httpp_method method;
	const char *method_name;
	unsigned minor;
	const char *path, *query;
	uint16_t nhdr;
	int64_t start_us;
	int status;
	uint64_t body_sent;
	bool held;      /* a handler owns it */
	bool counted;   /* in the requests_in_flight gauge */
	bool replied;   /* the reply (or the stream's end) is queued */
	bool streaming; /* a streamed reply is under way */
	bool stream_quiet; /* the stream takes no input */
	bool head_only; /* HEAD */
	bool keep_alive;
	bool expect, continued;
	bool accepted, ended, broken, body_event;
	void (*drain_cb)(void *);
	void *drain_arg;
	void (*close_cb)(void *);
	void *close_arg;
	void (*body_cb)(void *);
	void *body_arg;
};

struct conn {
	uint32_t magic;
	struct http_server *srv;
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) klink; /* in srv->kicked */
	int fd;
	enum http_listener on;
	enum phase phase;
	struct event *rd, *wr;
	struct httpp parser;
	struct http_req req;
	struct obuf *out;   /* pending output */
	struct obuf *stash; /* input not parsed yet */
	enum http_body_mode mode;
	bool closing;    /* close once the current reply is out */
	bool dead;       /* the socket is unusable; finish on the next turn */
	bool reading;    /* rd is added */
	bool writing;    /* wr is added */
	uint8_t piece;   /* what the last head piece was (PIECE_*) */
	bool refused;    /* over --max-connections: only the 503 and the linger */
	bool kicked;     /* in srv->kicked */
	uint32_t url_len, head_bytes, target_len;
	uint64_t body_in, raw_in, nchunks, dropped;
	int64_t deadline_us; /* PH_HEAD: when the head must be in */
	/* why a hook stopped the parser */
	int stop_status;
	const char *stop_code, *stop_msg;
	char peer[48];
};

TAILQ_HEAD(conn_list, conn);

struct http_server {
	struct worker *w;
	struct event_base *base;
	struct evconnlistener *lev[2];
	struct event *ev_accept; /* resumes accepting after EMFILE/ENFILE */
	struct event *ev_kick;   /* runs the connections in kicked */
	struct conn_list kicked;
	int accept_pause_ms;
	bool accept_paused;
	struct pool conn_pool, rbuf_pool, obuf_pool;
	struct conn_list conns;
	uint32_t nconns, nrefused_lingering;
	uint64_t accepted, refused, pauses;
	bool draining;
	int64_t pause_logged_us;
	uint64_t pauses_logged;
	char *scratch;
	char date[40];
	time_t date_sec;
};

static struct httpp_hooks hooks;
static void conn_process(struct conn *c, const char *p, size_t n);
static void request_done(struct conn *c);
static void conn_free(struct conn *c);
static bool body_full(const struct conn *c);
static const char *find_header(const struct http_req *r, const char *name);
static void start_close(struct conn *c);
static void reject(struct conn *c, int status, const char *code, const char *message);

/* ---- small helpers ------------------------------------------------------- */

static const struct config *
cfg_of(const struct conn *c)
{
	return c->srv->w->cfg;
}

static struct timeval
tv_ms(int64_t ms)
{
	struct timeval tv;

	if (ms < 1)
		ms = 1;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	return tv;
}

/* (Re)arms the read event with the timeout of the current phase. */
static void
arm_read(struct conn *c)
{
	struct timeval tv, *t = &tv;
	const struct config *cfg = cfg_of(c);

	switch (c->phase) {
	case PH_IDLE:
		tv = tv_ms(cfg->idle_timeout * 1000);
		break;
	case PH_HEAD:
		tv = tv_ms((c->deadline_us - now_unix_us()) / 1000);
		break;
	case PH_BODY:
		tv = tv_ms(cfg->read_timeout * 1000);
		break;
	case PH_LINGER:
		tv = tv_ms(LINGER_MS);
		break;
	default:
		t = NULL;
		break;
	}
	if (event_add(c->rd, t) == 0)
		c->reading = true;
}

static void
stop_read(struct conn *c)
{
	event_del(c->rd);
	c->reading = false;
}

/* Has the connection looked at on the next loop turn (its stashed input
 * parsed, or its death finished), never from inside the caller. One event
 * for the whole server: activating a connection's own persistent read event
 * would make libevent re-add it, reading where we had stopped reading. */
static void
kick(struct conn *c)
{
	if (c->kicked)
		return;
	c->kicked = true;
	TAILQ_INSERT_TAIL(&c->srv->kicked, c, klink);
	event_active(c->srv->ev_kick, EV_TIMEOUT, 0);
}

static void
unkick(struct conn *c)
{
	if (!c->kicked)
		return;
	TAILQ_REMOVE(&c->srv->kicked, c, klink);
	c->kicked = false;
}

static void
mark_dead(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	stop_read(c);
	event_del(c->wr);
	c->writing = false;
	kick(c);
}

/* The requests_in_flight gauge: requests a handler owns, streams of
 * subscribers excluded (they have their own gauge). */
static void
count_in(struct http_req *r)
{
	if (!r->counted)
		r->c->srv->w->me->st.requests_in_flight++;
	r->counted = true;
}

static void
count_out(struct http_req *r)
{
	if (r->counted)
		r->c->srv->w->me->st.requests_in_flight--;
	r->counted = false;
}

static struct obuf *
obuf_get(struct http_server *s)
{
	struct obuf *o = pool_get(&s->obuf_pool);

	if (o != NULL) {
		o->b.len = 0;
		o->b.failed = false;
		o->off = 0;
	}
	return o;
}

static void
obuf_put(struct http_server *s, struct obuf *o)
{
	if (o == NULL)
		return;
	wb_reset(&o->b, KEEP_OUT);
	pool_put(&s->obuf_pool, o);
}

static void
obuf_dtor(void *obj)
{
	wb_free(&((struct obuf *)obj)->b);
}

static void
rbuf_dtor(void *obj)
{
	struct rbuf *rb = obj;

	wb_free(&rb->head);
	wb_free(&rb->body);
	wb_free(&rb->extra);
}

static void
conn_dtor(void *obj)
{
	struct conn *c = obj;

	if (c->rd != NULL)
		event_free(c->rd);
	if (c->wr != NULL)
		event_free(c->wr);
	c->rd = c->wr = NULL;
}

static const char *
date_header(struct http_server *s)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now != s->date_sec) {
		gmtime_r(&now, &tm);
		strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		s->date_sec = now;
	}
	return s->date;
}

/* ---- output ----------------------------------------------------------------- */

static void
queue_out(struct conn *c, const struct iovec *iov, int cnt, size_t skip)
{
	if (c->out == NULL && (c->out = obuf_get(c->srv)) == NULL) {
		mark_dead(c);
		return;
	}
	for (int i = 0; i < cnt; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		wb_add(&c->out->b, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
		skip = 0;
	}
	if (c->out->b.failed) {
		mark_dead(c);
		return;
	}
	if (!c->writing) {
		struct timeval tv = {WRITE_TIMEOUT_S, 0};
		if (event_add(c->wr, &tv) == 0)
			c->writing = true;
	}
}

static size_t
queued(const struct conn *c)
{
	return c->out != NULL ? c->out->b.len - c->out->off : 0;
}

/* Writes iov: straight to the socket when nothing is queued, the rest queued. */
static void
conn_write(struct conn *c, const struct iovec *iov, int cnt)
{
	size_t done = 0;

	if (c->dead)
		return;
	if (queued(c) == 0) {
		ssize_t n = writev(c->fd, iov, cnt);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			mark_dead(c);
			return;
		}
		done = n > 0 ? (size_t)n : 0;
		size_t total = 0;
		for (int i = 0; i < cnt; i++)
			total += iov[i].iov_len;
		if (done == total)
			return;
	}
	queue_out(c, iov, cnt, done);
}

/* The queued output went out: what waited for that. */
static void
output_drained(struct conn *c)
{
	struct http_req *r = &c->req;

	obuf_put(c->srv, c->out);
	c->out = NULL;
	if (c->phase == PH_LINGER || (c->closing && (r->replied || !r->held) && c->phase != PH_BODY)) {
		start_close(c);
		return;
	}
	if (r->held && r->streaming && r->drain_cb != NULL)
		r->drain_cb(r->drain_arg);
	else if (!r->held && c->stash != NULL)
		kick(c); /* pipelined requests waited for the output */
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct obuf *o = c->out;
	ssize_t n;

	(void)fd;
	if (what & EV_TIMEOUT) {
		mark_dead(c);
		return;
	}
	if (o == NULL || c->dead)
		return;
	n = write(c->fd, o->b.p + o->off, o->b.len - o->off);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			mark_dead(c);
		return;
	}
	o->off += (size_t)n;
	if (o->off < o->b.len) {
		/* compact now and then so the buffer does not only grow */
		if (o->off > 65536 && o->off * 2 > o->b.len) {
			wb_consume(&o->b, o->off);
			o->off = 0;
		}
		return;
	}
	event_del(c->wr);
	c->writing = false;
	output_drained(c);
}

/* ---- closing ------------------------------------------------------------------ */

/* Everything is answered: stop sending, drop what the client still sends
 * for a moment, then close. */
static void
start_close(struct conn *c)
{
	if (c->dead)
		return;
	if (queued(c) > 0) {
		c->closing = true;
		return;
	}
	if (c->phase == PH_LINGER)
		return;
	c->phase = PH_LINGER;
	c->dropped = 0;
	shutdown(c->fd, SHUT_WR);
	stop_read(c);
	arm_read(c);
}

static void
unlink_conn(struct conn *c)
{
	struct http_server *s = c->srv;

	TAILQ_REMOVE(&s->conns, c, link);
	s->nconns--;
	if (c->refused)
		s->nrefused_lingering--;
}

static void
release_request(struct conn *c)
{
	struct http_req *r = &c->req;

	if (r->rb != NULL) {
		wb_reset(&r->rb->head, KEEP_HEAD);
		wb_reset(&r->rb->body, KEEP_BODY);
		wb_reset(&r->rb->extra, 4096);
		r->rb->body_off = 0;
		pool_put(&c->srv->rbuf_pool, r->rb);
	}
	memset(r, 0, sizeof(*r));
}

static void
log_done(struct conn *c)
{
	struct http_req *r = &c->req;

	if (r->magic != REQ_MAGIC || r->method_name == NULL)
		return;
	http_account_done(&(struct http_done){
	    .status = r->status, .body_bytes = r->body_sent, .start_us = r->start_us, .end_us = now_unix_us(),
	    .method = r->method_name, .path = r->path != NULL ? r->path : (r->route != NULL ? r->route->path : NULL),
	    .query = r->query, .peer = c->peer, .user_agent = find_header(r, "User-Agent"),
	    .referer = find_header(r, "Referer"), .minor = r->minor});
}

/* The end: the socket closes at once; a stream's close callback runs; the
 * connection is freed unless a handler still owns a plain request (its
 * reply frees the connection then). */
static void
conn_finish(struct conn *c)
{
	struct http_req *r = &c->req;

	c->dead = true;
	stop_read(c);
	event_del(c->wr);
	c->writing = false;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (r->held && !r->replied) {
		void (*cb)(void *) = r->close_cb;

		if (cb == NULL)
			return; /* the handler replies later; that frees us */
		r->close_cb = NULL;
		r->drain_cb = NULL;
		r->body_cb = NULL;
		r->held = false;
		if (r->status == 0)
			r->status = 499; /* the client left before an answer */
		log_done(c);
		count_out(r);
		cb(r->close_arg);
	}
	conn_free(c);
}

static void
conn_free(struct conn *c)
{
	struct http_server *s = c->srv;

	stop_read(c);
	event_del(c->wr);
	c->writing = false;
	unkick(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	obuf_put(s, c->out);
	obuf_put(s, c->stash);
	c->out = c->stash = NULL;
	release_request(c);
	unlink_conn(c);
	c->magic = 0;
	pool_put(&s->conn_pool, c);
}

/* ---- requests ------------------------------------------------------------------- */

static void
begin_request(struct conn *c)
{
	struct http_req *r = &c->req;

	memset(r, 0, sizeof(*r));
	r->magic = REQ_MAGIC;
	r->c = c;
	r->start_us = now_unix_us();
	r->minor = 1; /* until the request line says otherwise: what a rejection answers in */
	r->rb = pool_get(&c->srv->rbuf_pool);
	if (r->rb != NULL)
		r->rb->magic = RBUF_MAGIC;
	c->phase = PH_HEAD;
	c->mode = HTTP_BODY_DISCARD;
	c->piece = PIECE_NONE;
	c->url_len = c->head_bytes = c->target_len = 0;
	c->body_in = c->raw_in = c->nchunks = 0;
	c->stop_status = 0;
	c->deadline_us = r->start_us + cfg_of(c)->read_timeout * 1000000;
	arm_read(c);
}

/* Parser hooks: pieces of the head go into the request's head buffer. */
static int
stop_with(struct conn *c, int status, const char *code, const char *message)
{
	c->stop_status = status;
	c->stop_code = code;
	c->stop_msg = message;
	return -1;
}

static int
head_room(struct conn *c, size_t n)
{
	c->head_bytes += (uint32_t)n;
	if (c->head_bytes > (uint64_t)cfg_of(c)->max_header_size)
		return stop_with(c, 431, "HEADERS_TOO_LARGE", "Request header fields too large");
	return 0;
}

/* Closes the piece of the head being assembled: the target, a field
 * name (a field without a value gets an empty one) or a value. */
static void
end_piece(struct conn *c)
{
	struct http_req *r = &c->req;
	struct wbuf *h = &r->rb->head;

	switch (c->piece) {
	case PIECE_NONE:
	case PIECE_URL:
		c->target_len = (uint32_t)h->len;
		wb_add(h, "", 1);
		break;
	case PIECE_FIELD:
		wb_add(h, "", 1);
		r->rb->hval[r->nhdr - 1] = (uint32_t)h->len;
		wb_add(h, "", 1);
		break;
	case PIECE_VALUE:
		wb_add(h, "", 1);
		break;
	}
}

static int
hook_url(void *owner, const char *at, size_t n)
{
	struct conn *c = owner;

	c->url_len += (uint32_t)n;
	if (c->url_len > URI_MAX)
		return stop_with(c, 414, "URI_TOO_LONG", "Request target longer than 8192 bytes");
	if (head_room(c, n) != 0)
		return -1;
	wb_add(&c->req.rb->head, at, n);
	c->piece = PIECE_URL;
	return 0;
}

/* RFC 9110 tchar: what a field name is made of. The library (built
 * lenient) lets a space through, so "Content-Length : 5" would be a field
 * it ignores while a proxy in front may honour it; refuse such names. */
static bool
tchars(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL)))
			return false;
	}
	return true;
}

static int
hook_field(void *owner, const char *at, size_t n)
{
	struct conn *c = owner;
	struct http_req *r = &c->req;
	struct wbuf *h = &r->rb->head;

	if (!tchars(at, n))
		return stop_with(c, 400, "INVALID_REQUEST", "Malformed request: invalid character in header");
	if (head_room(c, n + 4) != 0)
		return -1;
	if (httpp_in_trailer(&c->parser))
		return 0; /* trailer fields count toward the limit, nothing more */
	if (c->piece != PIECE_FIELD) {
		end_piece(c);
		if (r->nhdr == HEADERS_MAX)
			return stop_with(c, 431, "HEADERS_TOO_LARGE", "More than 100 header fields");
		r->rb->hname[r->nhdr] = (uint32_t)h->len;
		r->rb->hval[r->nhdr] = 0;
		r->nhdr++;
		c->piece = PIECE_FIELD;
	}
	wb_add(h, at, n);
	return 0;
}

static int
hook_value(void *owner, const char *at, size_t n)
{
	struct conn *c = owner;
	struct http_req *r = &c->req;
	struct wbuf *h = &r->rb->head;

	if (head_room(c, n) != 0)
		return -1;
	if (httpp_in_trailer(&c->parser))
		return 0;
	if (c->piece != PIECE_VALUE) {
		wb_add(h, "", 1); /* end of the name */
		r->rb->hval[r->nhdr - 1] = (uint32_t)h->len;
		c->piece = PIECE_VALUE;
	}
	wb_add(h, at, n);
	return 0;
}

/* A body event for a streaming handler, delivered after the parser returns. */
static void
note_body_event(struct http_req *r)
{
	r->body_event = true;
}

static int
hook_body(void *owner, const char *at, size_t n)
{
	struct conn *c = owner;
	struct http_req *r = &c->req;

	c->body_in += n;
	switch (c->mode) {
	case HTTP_BODY_BUFFER:
		if (c->body_in > (uint64_t)cfg_of(c)->max_body)
			return stop_with(c, 413, "BODY_TOO_LARGE", NULL);
		wb_add(&r->rb->body, at, n);
		if (r->rb->body.failed)
			return stop_with(c, 500, "INTERNAL_ERROR", "Out of memory");
		return 0;
	case HTTP_BODY_STREAM:
		if (r->accepted && !r->replied) {
			wb_add(&r->rb->body, at, n);
			if (r->rb->body.failed)
				return stop_with(c, 500, "INTERNAL_ERROR", "Out of memory");
			note_body_event(r);
			return 0;
		}
		/* a refused streamed body is dropped like any other */
		/* FALLTHROUGH */
	default:
		if (c->body_in > (uint64_t)cfg_of(c)->max_body)
			return stop_with(c, 413, "BODY_TOO_LARGE", NULL);
		return 0;
	}
}

static int
hook_chunk(void *owner)
{
	struct conn *c = owner;

	c->nchunks++;
	return 0;
}

static struct httpp_hooks hooks = {
	.url = hook_url,
	.header_field = hook_field,
	.header_value = hook_value,
	.body = hook_body,
	.chunk = hook_chunk,
};

/* The value of header name in the finished head, or NULL. */
static const char *
find_header(const struct http_req *r, const char *name)
{
	if (r->rb == NULL)
		return NULL;
	for (uint16_t i = 0; i < r->nhdr; i++) {
		if (r->rb->hval[i] == 0)
			continue;
		if (strcasecmp(r->rb->head.p + r->rb->hname[i], name) == 0)
			return r->rb->head.p + r->rb->hval[i];
	}
	return NULL;
}

static bool
token_eq(const char *v, const char *word)
{
	size_t n = strlen(word);

	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, word, n) != 0)
		return false;
	for (v += n; *v == ' ' || *v == '\t'; v++)
		;
	return *v == '\0';
}

/* Trims the blanks around every header value in place (OWS, RFC 9110 5.5). */
static void
trim_values(struct http_req *r)
{
	for (uint16_t i = 0; i < r->nhdr; i++) {
		char *v, *e;

		if (r->rb->hval[i] == 0)
			continue;
		v = r->rb->head.p + r->rb->hval[i];
		while (*v == ' ' || *v == '\t')
			v++;
		e = v + strlen(v);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		r->rb->hval[i] = (uint32_t)(v - r->rb->head.p);
	}
}

/* The head is in: close it off, validate, route. 0 to go on parsing,
 * -1 when the request was answered (or the handler holds the input). */
static int
head_done(struct conn *c)
{
	struct http_req *r = &c->req;
	struct http_server *s = c->srv;
	const struct config *cfg = cfg_of(c);
	struct wbuf *h;
	size_t tlen, poff, plen, qoff, qlen, path_at, query_at = 0;
	unsigned major, minor;
	uint64_t clen = 0;
	bool has_len;
	const char *te, *expect;

	if (r->rb == NULL) {
		reject(c, 500, "INTERNAL_ERROR", "Out of memory");
		return -1;
	}
	h = &r->rb->head;
	end_piece(c);
	c->piece = PIECE_NONE;
	tlen = c->target_len;
	r->method = httpp_method(&c->parser);
	r->method_name = httpp_method_name(&c->parser);
	httpp_version(&c->parser, &major, &minor);
	r->minor = major == 1 && minor <= 1 ? minor : 1; /* a 505 answers in HTTP/1.1 */
	r->head_only = r->method == HTTPP_HEAD;
	if (r->method == HTTPP_OTHER) {
		reject(c, 405, "INVALID_REQUEST", "Method not allowed");
		return -1;
	}
	/* the path and query as C strings after the head */
	if (httpp_split_target(h->p, tlen, &poff, &plen, &qoff, &qlen) != 0 || plen == 0) {
		reject(c, 400, "INVALID_REQUEST", "Malformed request target");
		return -1;
	}
	/* room first: the copies come from the buffer itself */
	if (!wb_reserve(h, plen + qlen + 2)) {
		reject(c, 500, "INTERNAL_ERROR", "Out of memory");
		return -1;
	}
	path_at = h->len;
	wb_add(h, h->p + poff, plen);
	wb_add(h, "", 1);
	if (qlen > 0) {
		query_at = h->len;
		wb_add(h, h->p + qoff, qlen);
		wb_add(h, "", 1);
	}
	if (h->failed) {
		reject(c, 500, "INTERNAL_ERROR", "Out of memory");
		return -1;
	}
	r->path = h->p + path_at;
	r->query = qlen > 0 ? h->p + query_at : NULL;
	trim_values(r);

	if (major != 1 || minor > 1) {
		reject(c, 505, "HTTP_VERSION_NOT_SUPPORTED", "Only HTTP/1.0 and HTTP/1.1 are supported");
		return -1;
	}
	if (r->method == HTTPP_OTHER) {
		reject(c, 405, "INVALID_REQUEST", "Method not allowed");
		return -1;
	}
	/* Framing: what we read in the fields must be what the parser acts
	 * on, or a proxy and we could disagree about where the body ends. */
	te = NULL;
	for (uint16_t i = 0; i < r->nhdr; i++) {
		const char *name = h->p + r->rb->hname[i], *v = h->p + r->rb->hval[i];
		if (strcasecmp(name, "Transfer-Encoding") == 0) {
			te = v;
			if (!token_eq(v, "chunked")) {
				reject(c, 501, "NOT_IMPLEMENTED", "Only the chunked transfer coding is supported");
				return -1;
			}
		} else if (strcasecmp(name, "Content-Length") == 0) {
			uint64_t want = 0, got;
			const char *d = v;
			for (; *d >= '0' && *d <= '9' && want < (UINT64_MAX - 9) / 10; d++)
				want = want * 10 + (uint64_t)(*d - '0');
			if (*d != '\0' || d == v || !httpp_length(&c->parser, &got) || got != want) {
				reject(c, 400, "INVALID_REQUEST", "Malformed request: invalid Content-Length");
				return -1;
			}
		}
	}
	if (te != NULL && !httpp_chunked(&c->parser)) {
		reject(c, 400, "INVALID_REQUEST", "Malformed request: invalid Transfer-Encoding");
		return -1;
	}
	if (r->query != NULL && !http_query_valid(r->query, qlen)) {
		reject(c, 400, "INVALID_REQUEST", "Malformed query string: bad %-escape or NUL");
		return -1;
	}
	r->keep_alive = httpp_keep_alive(&c->parser) && !s->draining && !httpp_upgrade(&c->parser);
	if (!r->keep_alive)
		c->closing = true;
	r->route = router_match(r->path, c->on);
	c->mode = r->route != NULL ? r->route->body : HTTP_BODY_DISCARD;
	has_len = httpp_length(&c->parser, &clen);
	expect = find_header(r, "Expect");
	r->expect = expect != NULL && token_eq(expect, "100-continue") && minor >= 1;

	if (c->mode != HTTP_BODY_STREAM && has_len && clen > (uint64_t)cfg->max_body) {
		c->stop_status = 413;
		reject(c, 413, "BODY_TOO_LARGE", NULL);
		return -1;
	}
	if (c->mode == HTTP_BODY_BUFFER && !has_len && !httpp_chunked(&c->parser) &&
	    (r->method == HTTPP_POST || r->method == HTTPP_PUT || r->method == HTTPP_PATCH)) {
		reject(c, 411, "LENGTH_REQUIRED", "A request body needs Content-Length or chunked framing");
		return -1;
	}
	s->w->me->st.http_requests++;
	c->phase = PH_BODY;
	if (c->mode == HTTP_BODY_STREAM) {
		/* the handler decides about the body; nothing more is read until
		 * it accepts (or answers, and the body is dropped) */
		stop_read(c);
		r->held = true;
		count_in(r);
		r->route->fn(r);
		if (c->dead || r->held)
			return -1; /* the handler has it (the rest is stashed) */
		/* answered at once: the body is dropped here, unless closing */
		return c->phase == PH_BODY && !c->closing ? 0 : -1;
	}
	if (r->expect && (has_len ? clen > 0 : httpp_chunked(&c->parser))) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		struct iovec iov = {(void *)cont, sizeof(cont) - 1};
		conn_write(c, &iov, 1);
		r->continued = true;
	}
	arm_read(c);
	return 0;
}

/* The whole message is in. */
static void
message_done(struct conn *c)
{
	struct http_req *r = &c->req;

	if (c->mode == HTTP_BODY_STREAM && r->held) {
		r->ended = true;
		c->phase = PH_WAIT;
		stop_read(c);
		note_body_event(r);
		return;
	}
	if (r->replied || (c->mode == HTTP_BODY_STREAM && !r->held)) {
		/* a streamed body the handler refused has been dropped */
		c->phase = PH_WAIT;
		request_done(c);
		return;
	}
	c->phase = PH_WAIT;
	/* keep reading: a pipelined request is stashed, a client leaving is noticed */
	arm_read(c);
	r->held = true;
	count_in(r);
	if (r->route != NULL)
		r->route->fn(r);
	else
		router_not_found(r);
}

/* Keeps n bytes for later (input behind the current request). */
static void
stash(struct conn *c, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (c->stash == NULL && (c->stash = obuf_get(c->srv)) == NULL) {
		mark_dead(c);
		return;
	}
	if (c->stash->off > 0 && c->stash->off == c->stash->b.len) {
		c->stash->b.len = 0;
		c->stash->off = 0;
	}
	wb_add(&c->stash->b, p, n);
	if (c->stash->b.failed)
		mark_dead(c);
	else if (c->stash->b.len - c->stash->off >= STASH_MAX)
		stop_read(c); /* enough waiting: TCP holds the rest back */
}

/* Delivers a pending body event to a streaming handler. */
static void
body_event(struct conn *c)
{
	struct http_req *r = &c->req;

	if (!r->body_event || r->body_cb == NULL || !r->held)
		return;
	r->body_event = false;
	r->body_cb(r->body_arg);
}

/* Parses input; what cannot be parsed now waits in the stash. */
static void
parse(struct conn *c, const char *p, size_t n)
{
	while (n > 0 && !c->dead) {
		enum httpp_event ev;
		size_t used;

		if (c->phase == PH_IDLE)
			begin_request(c);
		if (c->req.rb == NULL) {
			reject(c, 503, "SERVICE_UNAVAILABLE", "Out of memory");
			return;
		}
		used = httpp_feed(&c->parser, p, n, &ev);
		if (c->phase == PH_BODY)
			c->raw_in += used;
		p += used;
		n -= used;
		switch (ev) {
		case HTTPP_MORE:
			if (c->phase == PH_BODY && c->raw_in > c->body_in + FRAMING_SLACK + FRAMING_PER_CHUNK * c->nchunks) {
				reject(c, 400, "INVALID_REQUEST", "Malformed chunked body: framing too long");
				return;
			}
			break;
		case HTTPP_HEAD_DONE:
			httpp_resume(&c->parser);
			if (head_done(c) != 0) {
				if (!c->dead && c->req.held && !c->req.replied) {
					stash(c, p, n); /* body bytes behind a streamed head */
					if (c->req.accepted && c->stash != NULL)
						kick(c); /* taken already: parse them next turn */
				}
				return;
			}
			break;
		case HTTPP_MSG_DONE:
			stash(c, p, n);
			message_done(c);
			return;
		case HTTPP_STOPPED:
			if (c->stop_status == 413) {
				char msg[128];
				snprintf(msg, sizeof(msg), "Request body exceeds the limit of %lld bytes",
				         (long long)cfg_of(c)->max_body);
				reject(c, 413, "BODY_TOO_LARGE", msg);
			} else {
				reject(c, c->stop_status, c->stop_code, c->stop_msg);
			}
			return;
		case HTTPP_ERROR:
			switch (httpp_error(&c->parser)) {
			case HTTPP_E_METHOD:
				reject(c, 405, "INVALID_REQUEST", "Method not allowed");
				break;
			case HTTPP_E_HEAD_TOO_BIG:
				reject(c, 431, "HEADERS_TOO_LARGE", "Request header fields too large");
				break;
			case HTTPP_E_CODING:
				reject(c, 501, "NOT_IMPLEMENTED", "Only the chunked transfer coding is supported");
				break;
			default: {
				char msg[160];
				snprintf(msg, sizeof(msg), "Malformed request: %s", httpp_error_text(&c->parser));
				reject(c, 400, "INVALID_REQUEST", msg);
			}
			}
			return;
		}
	}
}

static void
conn_process(struct conn *c, const char *p, size_t n)
{
	struct http_req *r = &c->req;

	switch (c->phase) {
	case PH_LINGER:
		c->dropped += n;
		if (c->dropped > LINGER_BYTES)
			conn_finish(c);
		return;
	case PH_WAIT:
		if (r->stream_quiet || (r->streaming && c->mode != HTTP_BODY_STREAM)) {
			/* a stream takes no input: drop it, within reason */
			c->dropped += n;
			if (c->dropped > STREAM_INPUT_MAX)
				mark_dead(c);
			return;
		}
		stash(c, p, n);
		return;
	default:
		if (c->stash != NULL && c->stash->off < c->stash->b.len) {
			stash(c, p, n); /* keep the order: older input first */
			return;
		}
		parse(c, p, n);
		if (body_full(c))
			stop_read(c);
		body_event(c);
	}
}

/* Input that waited behind the previous request. */
static void
parse_stash(struct conn *c)
{
	struct obuf *o;

	while ((o = c->stash) != NULL && o->off < o->b.len && !c->dead &&
	       (c->phase == PH_IDLE || c->phase == PH_HEAD || c->phase == PH_BODY)) {
		size_t n = o->b.len - o->off;
		const char *p = o->b.p + o->off;

		/* the stash is parsed from its own copy: parse() may stash again */
		c->stash = NULL;
		o->off = o->b.len;
		parse(c, p, n);
		if (c->stash == NULL) {
			c->stash = o;
			o->b.len = o->off = 0;
		} else {
			/* some of it went back into a new stash: keep the old memory */
			obuf_put(c->srv, o);
		}
		if (body_full(c))
			stop_read(c);
		body_event(c);
		if (c->phase == PH_WAIT || c->phase == PH_LINGER || !c->reading)
			break;
	}
	if (c->stash != NULL && c->stash->off >= c->stash->b.len) {
		obuf_put(c->srv, c->stash);
		c->stash = NULL;
	}
}

static void
on_timeout(struct conn *c)
{
	struct http_req *r = &c->req;

	switch (c->phase) {
	case PH_IDLE:
	case PH_LINGER:
		conn_finish(c);
		return;
	case PH_HEAD:
		if (now_unix_us() < c->deadline_us) {
			arm_read(c);
			return;
		}
		reject(c, 408, "REQUEST_TIMEOUT", "Request head not received in time");
		return;
	case PH_BODY:
		if (c->mode == HTTP_BODY_STREAM && r->held) {
			r->broken = true;
			c->closing = true;
			stop_read(c);
			note_body_event(r);
			body_event(c);
			return;
		}
		reject(c, 408, "REQUEST_TIMEOUT", "Request body not received in time");
		return;
	default:
		return;
	}
}

/* The client closed its side (or the socket failed). */
static void
on_eof(struct conn *c)
{
	struct http_req *r = &c->req;

	if (c->phase == PH_WAIT && r->held && !r->replied && !r->stream_quiet) {
		/* A half-closed client may still read the answer (of a plain
		 * request, or an import whose body is in); whether it is gone
		 * shows when we write. */
		stop_read(c);
		c->closing = true;
		return;
	}
	conn_finish(c);
}

/* A kicked connection: finish its death, parse what it has stashed, or
 * deliver a body event. */
static void
on_kicked(struct conn *c)
{
	if (c->dead) {
		conn_finish(c);
		return;
	}
	if (c->stash != NULL && c->phase != PH_WAIT && c->phase != PH_LINGER)
		parse_stash(c);
	if (!c->dead)
		body_event(c);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	struct conn *c;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&s->kicked)) != NULL) {
		unkick(c);
		on_kicked(c);
	}
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct http_server *s = c->srv;
	ssize_t n;

	(void)fd;
	if (c->dead) {
		conn_finish(c);
		return;
	}
	if (what & EV_TIMEOUT) {
		on_timeout(c);
		return;
	}
	if (c->stash != NULL && c->phase != PH_WAIT && c->phase != PH_LINGER) {
		/* older input first */
		parse_stash(c);
		if (c->dead || c->phase == PH_WAIT || c->phase == PH_LINGER || c->stash != NULL || !c->reading)
			return;
	}
	n = read(c->fd, s->scratch, READ_CHUNK);
	if (n > 0) {
		if (c->phase == PH_HEAD)
			arm_read(c); /* the deadline stays; the timer is refreshed */
		conn_process(c, s->scratch, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	on_eof(c);
}

/* ---- rejections ----------------------------------------------------------------- */

/* Answers an HTTP-level problem with JSON and closes (after a linger). */
static void
reject(struct conn *c, int status, const char *code, const char *message)
{
	struct http_req *r = &c->req;
	char msg[160];

	if (c->dead)
		return;
	if (r->magic == REQ_MAGIC && r->replied) {
		/* answered already (a refused or failed import whose body was
		 * being dropped): closing is all that is left */
		c->closing = true;
		start_close(c);
		return;
	}
	if (message == NULL) {
		snprintf(msg, sizeof(msg), "Request body exceeds the limit of %lld bytes", (long long)cfg_of(c)->max_body);
		message = msg;
	}
	c->closing = true;
	if (r->held && !r->replied) {
		if (c->mode == HTTP_BODY_STREAM) {
			/* the streaming handler answers in its own time (an
			 * import's error event); it sees the body broken */
			r->broken = true;
			stop_read(c);
			note_body_event(r);
			return;
		}
		mark_dead(c);
		return;
	}
	if (r->magic != REQ_MAGIC) {
		memset(r, 0, sizeof(*r));
		r->magic = REQ_MAGIC;
		r->c = c;
		r->start_us = now_unix_us();
	}
	if (r->method_name == NULL)
		r->method_name = "-";
	if (r->rb != NULL && status == 405)
		http_add_header(r, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
	c->phase = PH_WAIT;
	r->held = true;
	c->srv->w->me->st.http_requests++;
	count_in(r);
	http_send_error(r, status, code, message, NULL);
}

/* ---- the reply API ----------------------------------------------------------------- */

static bool
live(const struct http_req *r)
{
	return r != NULL && r->magic == REQ_MAGIC && r->held;
}

struct worker *
http_req_worker(const struct http_req *r)
{
	return r->c->srv->w;
}

enum httpp_method
http_req_method(const struct http_req *r)
{
	return r->method;
}

const char *
http_req_method_name(const struct http_req *r)
{
	return r->method_name != NULL ? r->method_name : "-";
}

const char *
http_req_path(const struct http_req *r)
{
	return r->path != NULL ? r->path : "";
}

const char *
http_req_query(const struct http_req *r)
{
	return r->query;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
	return find_header(r, name);
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
	if (r->rb == NULL || r->rb->body.len == 0) {
		*len = 0;
		return "";
	}
	/* keep it a C string for json-c's convenience */
	wb_add(&r->rb->body, "", 1);
	r->rb->body.len--;
	*len = r->rb->body.len;
	return r->rb->body.p;
}

enum http_listener
http_req_listener(const struct http_req *r)
{
	return r->c->on;
}

int64_t
http_req_start_us(const struct http_req *r)
{
	return r->start_us;
}

const char *
http_req_peer(const struct http_req *r)
{
	return r->c->peer;
}

void
http_add_header(struct http_req *r, const char *name, const char *value)
{
	struct wbuf *e;

	if (r->rb == NULL || r->replied || r->streaming)
		return;
	e = &r->rb->extra;
	wb_add(e, name, strlen(name));
	wb_lit(e, ": ");
	wb_add(e, value, strlen(value));
	wb_lit(e, "\r\n");
}

/* The status line and headers into buf; length_or_neg: the Content-Length,
 * or -1 for a chunked (HTTP/1.1) / close-delimited (1.0) stream. */
static size_t
format_head(struct http_req *r, char *buf, size_t cap, int status, const char *ctype, int64_t length)
{
	struct conn *c = r->c;
	int n;

	if (c->closing || !r->keep_alive || (length < 0 && r->minor == 0))
		c->closing = true;
	n = snprintf(buf, cap, "HTTP/1.%u %d %s\r\nServer: " HTTP_SERVER_HEADER "\r\nDate: %s\r\nContent-Type: %s\r\n",
	             r->minor, status, httpp_reason(status), date_header(c->srv), ctype);
	if (length >= 0)
		n += snprintf(buf + n, cap - (size_t)n, "Content-Length: %lld\r\n", (long long)length);
	else if (r->minor >= 1)
		n += snprintf(buf + n, cap - (size_t)n, "Transfer-Encoding: chunked\r\n");
	if (c->closing)
		n += snprintf(buf + n, cap - (size_t)n, "Connection: close\r\n");
	else if (r->minor == 0 || length < 0)
		n += snprintf(buf + n, cap - (size_t)n, "Connection: keep-alive\r\n");
	return (size_t)n;
}

/* The reply is queued; the request is over when its body is too. */
static void
reply_done(struct conn *c)
{
	struct http_req *r = &c->req;

	r->replied = true;
	if (c->phase == PH_BODY) {
		/* answered before the body was read (a refused import): the body
		 * is dropped (bounded by --max-body), unless the client waits for
		 * 100 Continue we never sent: then only closing keeps the framing */
		if (r->expect && !r->continued)
			c->closing = true;
		/* a handler that took part of the body and stopped (a failed
		 * import) leaves the rest unread: closing is the safe end */
		if (r->accepted)
			c->closing = true;
		if (c->closing) {
			request_done(c);
			return;
		}
		c->mode = HTTP_BODY_DISCARD;
		c->body_in = 0; /* --max-body bounds what is dropped from here on */
		r->held = false;
		count_out(r);
		arm_read(c);
		kick(c); /* body bytes may wait in the stash */
		return;
	}
	request_done(c);
}

void
http_send(struct http_req *r, int status, const char *ctype, const char *body, size_t len)
{
	struct conn *c;
	char head[768];
	struct iovec iov[3];
	int cnt = 0;

	if (!live(r) || r->replied || r->streaming)
		return;
	c = r->c;
	r->status = status;
	http_account_head(r, status);
	if (c->dead) {
		reply_done(c);
		return;
	}
	iov[cnt].iov_base = head;
	iov[cnt++].iov_len = format_head(r, head, sizeof(head), status, ctype, (int64_t)len);
	if (r->rb != NULL && r->rb->extra.len > 0) {
		iov[cnt].iov_base = r->rb->extra.p;
		iov[cnt++].iov_len = r->rb->extra.len;
	}
	iov[cnt].iov_base = (void *)"\r\n";
	iov[cnt++].iov_len = 2;
	conn_write(c, iov, cnt);
	if (!r->head_only && len > 0) {
		struct iovec b = {(void *)body, len};
		conn_write(c, &b, 1);
		r->body_sent = len;
	}
	reply_done(c);
}

int
http_stream_begin(struct http_req *r, int status, const char *ctype)
{
	struct conn *c;
	char head[768];
	struct iovec iov[3];
	int cnt = 0;

	if (!live(r) || r->replied || r->streaming)
		return -1;
	c = r->c;
	if (c->dead) {
		r->status = 499;
		http_account_head(r, status);
		reply_done(c);
		return -1;
	}
	r->status = status;
	http_account_head(r, status);
	iov[cnt].iov_base = head;
	iov[cnt++].iov_len = format_head(r, head, sizeof(head), status, ctype, -1);
	if (r->rb != NULL && r->rb->extra.len > 0) {
		iov[cnt].iov_base = r->rb->extra.p;
		iov[cnt++].iov_len = r->rb->extra.len;
	}
	iov[cnt].iov_base = (void *)"\r\n";
	iov[cnt++].iov_len = 2;
	conn_write(c, iov, cnt);
	r->streaming = true;
	if (c->mode != HTTP_BODY_STREAM)
		count_out(r); /* a subscription is counted as a subscriber */
	c->dropped = 0;
	return 0;
}

void
http_stream_send(struct http_req *r, const void *p, size_t n)
{
	struct conn *c;
	char hd[24];
	struct iovec iov[3];
	int cnt = 0;

	if (!live(r) || !r->streaming || r->replied || n == 0 || r->head_only)
		return;
	c = r->c;
	if (r->minor >= 1) {
		iov[cnt].iov_base = hd;
		iov[cnt++].iov_len = (size_t)snprintf(hd, sizeof(hd), "%zx\r\n", n);
	}
	iov[cnt].iov_base = (void *)p;
	iov[cnt++].iov_len = n;
	if (r->minor >= 1) {
		iov[cnt].iov_base = (void *)"\r\n";
		iov[cnt++].iov_len = 2;
	}
	conn_write(c, iov, cnt);
	r->body_sent += n;
}

size_t
http_stream_queued(const struct http_req *r)
{
	return live(r) ? queued(r->c) : 0;
}

void
http_stream_end(struct http_req *r)
{
	struct conn *c;

	if (!live(r) || !r->streaming || r->replied)
		return;
	c = r->c;
	if (r->minor >= 1 && !r->head_only && !c->dead) {
		struct iovec iov = {(void *)"0\r\n\r\n", 5};
		conn_write(c, &iov, 1);
	}
	r->close_cb = NULL;
	r->drain_cb = NULL;
	reply_done(c);
}

void
http_close_after(struct http_req *r)
{
	if (live(r))
		r->c->closing = true;
}

void
http_on_drain(struct http_req *r, void (*cb)(void *), void *arg)
{
	r->drain_cb = cb;
	r->drain_arg = arg;
}

void
http_on_close(struct http_req *r, void (*cb)(void *), void *arg)
{
	r->close_cb = cb;
	r->close_arg = arg;
}

void
http_stream_tune(struct http_req *r, int keepalive_s)
{
	struct conn *c = r->c;
	int one = 1, idle = 30, sndbuf = 32 * 1024;
	unsigned int user_ms = (unsigned int)(keepalive_s * 2 + 30) * 1000u;

	r->stream_quiet = true;
	/* A stalled subscriber pins at most this much kernel memory (the
	 * kernel doubles it); the rest coalesces in sse.c. Keepalive probes
	 * and TCP_USER_TIMEOUT find peers that vanished without a FIN. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) != 0 ||
	    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0 ||
	    setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms)) != 0)
		log_debug("stream socket options: %s", strerror(errno));
	/* the head and body buffers are not needed for the stream's life */
	if (r->rb != NULL) {
		struct rbuf *rb = r->rb;
		r->path = r->query = NULL;
		r->nhdr = 0;
		r->rb = NULL;
		wb_reset(&rb->head, KEEP_HEAD);
		wb_reset(&rb->body, KEEP_BODY);
		wb_reset(&rb->extra, 4096);
		pool_put(&c->srv->rbuf_pool, rb);
	}
}

/* ---- streamed request bodies ---------------------------------------------------- */

int
http_body_accept(struct http_req *r, void (*cb)(void *), void *arg)
{
	struct conn *c;

	if (!live(r) || r->replied)
		return -1;
	c = r->c;
	if (c->dead)
		return -1;
	r->body_cb = cb;
	r->body_arg = arg;
	r->accepted = true;
	if (r->expect && !r->continued && c->phase == PH_BODY) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		struct iovec iov = {(void *)cont, sizeof(cont) - 1};
		conn_write(c, &iov, 1);
		r->continued = true;
	}
	if (c->phase == PH_BODY) {
		arm_read(c);
		if (c->stash != NULL)
			kick(c);
	}
	if (r->ended || r->rb->body.len > r->rb->body_off) {
		note_body_event(r);
		kick(c);
	}
	return 0;
}

const char *
http_body_data(const struct http_req *r, size_t *len)
{
	if (r->rb == NULL || r->rb->body.p == NULL) {
		*len = 0;
		return "";
	}
	*len = r->rb->body.len - r->rb->body_off;
	return r->rb->body.p + r->rb->body_off;
}

void
http_body_consume(struct http_req *r, size_t n)
{
	struct rbuf *rb = r->rb;
	struct conn *c = r->c;

	if (rb == NULL)
		return;
	rb->body_off += n;
	if (rb->body_off >= rb->body.len) {
		rb->body.len = rb->body_off = 0;
	} else if (rb->body_off > 256 * 1024) {
		wb_consume(&rb->body, rb->body_off);
		rb->body_off = 0;
	}
	if (c->phase == PH_BODY && !c->dead && rb->body.len - rb->body_off < HTTP_STREAM_BODY_CAP && !c->reading) {
		arm_read(c);
		if (c->stash != NULL)
			kick(c);
	}
}

bool
http_body_ended(const struct http_req *r)
{
	return r->ended;
}

bool
http_body_broken(const struct http_req *r)
{
	return r->broken;
}

bool
http_body_expecting(const struct http_req *r)
{
	return r->expect && !r->continued;
}

/* Backpressure for streamed bodies: stop reading while the handler has its fill. */
static bool
body_full(const struct conn *c)
{
	const struct http_req *r = &c->req;

	return c->phase == PH_BODY && c->mode == HTTP_BODY_STREAM && r->rb != NULL &&
	       (!r->accepted || r->rb->body.len - r->rb->body_off >= HTTP_STREAM_BODY_CAP);
}

/* ---- request end ---------------------------------------------------------------- */

static void
request_done(struct conn *c)
{
	struct http_req *r = &c->req;

	log_done(c);
	count_out(r);
	release_request(c);
	if (c->dead) {
		conn_finish(c);
		return;
	}
	if (c->closing || c->srv->draining) {
		c->phase = PH_WAIT;
		c->closing = true;
		start_close(c);
		return;
	}
	c->phase = PH_IDLE;
	c->mode = HTTP_BODY_DISCARD;
	c->dropped = 0;
	httpp_resume(&c->parser);
	arm_read(c);
	if (c->stash != NULL && queued(c) < OUT_HIGH)
		kick(c);
}

/* ---- accepting ---------------------------------------------------------------------- */

static void
peer_text(const struct sockaddr *sa, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	out[0] = '-';
	out[1] = '\0';
	if (sa->sa_family == AF_INET && inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, a, sizeof(a)))
		snprintf(out, cap, "%s", a);
	else if (sa->sa_family == AF_INET6 &&
	         inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, a, sizeof(a)))
		snprintf(out, cap, "%s", a);
}

/* A new connection on fd (accepted on listener `on`, or adopted). */
static void
conn_open(struct http_server *s, int fd, const struct sockaddr *sa, enum http_listener on)
{
	struct conn *c;
	int one = 1;
	bool over = s->nconns - s->nrefused_lingering >= (uint32_t)s->w->cfg->max_connections;

	if (over && s->nrefused_lingering >= REJECT_EXTRA) {
		s->refused++;
		close(fd);
		return;
	}
	c = pool_get(&s->conn_pool);
	if (c == NULL) {
		close(fd);
		return;
	}
	if (c->rd == NULL) {
		c->rd = event_new(s->base, -1, 0, on_read, c);
		c->wr = event_new(s->base, -1, 0, on_write, c);
		if (c->rd == NULL || c->wr == NULL) {
			conn_dtor(c);
			pool_put(&s->conn_pool, c);
			close(fd);
			return;
		}
	}
	{
		struct event *rd = c->rd, *wr = c->wr;
		memset(c, 0, sizeof(*c));
		c->rd = rd;
		c->wr = wr;
	}
	c->magic = CONN_MAGIC;
	c->srv = s;
	c->fd = fd;
	c->on = on;
	c->phase = PH_IDLE;
	event_assign(c->rd, s->base, fd, EV_READ | EV_PERSIST, on_read, c);
	event_assign(c->wr, s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	httpp_init(&c->parser, &hooks, c);
	if (sa != NULL)
		peer_text(sa, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "-");
	TAILQ_INSERT_TAIL(&s->conns, c, link);
	s->nconns++;
	s->accepted++;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (over) {
		/* over --max-connections: the answer, then close */
		char msg[128];
		s->refused++;
		s->nrefused_lingering++;
		c->refused = true;
		snprintf(msg, sizeof(msg), "Too many connections: at most %lld per worker",
		         (long long)s->w->cfg->max_connections);
		begin_request(c);
		c->req.minor = 1;
		reject(c, 503, "TOO_MANY_CONNECTIONS", msg);
		return;
	}
	if (s->draining) {
		conn_finish(c);
		return;
	}
	arm_read(c);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct http_server *s = arg;

	(void)salen;
	s->accept_pause_ms = 0; /* an accept worked: the next pause starts short */
	conn_open(s, fd, sa, lev == s->lev[HTTP_LISTENER_ADMIN] ? HTTP_LISTENER_ADMIN : HTTP_LISTENER_PUBLIC);
}

int
http_server_adopt(struct http_server *s, int fd, enum http_listener on)
{
	if (evutil_make_socket_nonblocking(fd) != 0)
		return -1;
	conn_open(s, fd, NULL, on);
	return 0;
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	s->accept_paused = false;
	if (s->draining)
		return;
	for (int i = 0; i < 2; i++)
		if (s->lev[i] != NULL)
			evconnlistener_enable(s->lev[i]);
}

/* accept() failed for a reason other than "try again": at the descriptor
 * limit the pending connection stays in the backlog and would wake us in a
 * tight loop, so stop accepting for a short, growing pause. */
static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct http_server *s = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv;

	(void)lev;
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_warn("accept: %s", strerror(err));
		return;
	}
	for (int i = 0; i < 2; i++)
		if (s->lev[i] != NULL)
			evconnlistener_disable(s->lev[i]);
	s->pauses++;
	/* one line per 10 s at most, however often it happens */
	if (now_unix_us() - s->pause_logged_us >= 10000000) {
		log_warn("accept: %s; pausing new connections until descriptors free up (%llu pause(s) since the "
		         "last report)",
		         strerror(err), (unsigned long long)(s->pauses - s->pauses_logged));
		s->pause_logged_us = now_unix_us();
		s->pauses_logged = s->pauses;
	}
	s->accept_pause_ms = s->accept_pause_ms == 0 ? ACCEPT_PAUSE_MIN_MS : s->accept_pause_ms * 2;
	if (s->accept_pause_ms > ACCEPT_PAUSE_MAX_MS)
		s->accept_pause_ms = ACCEPT_PAUSE_MAX_MS;
	s->accept_paused = true;
	tv = tv_ms(s->accept_pause_ms);
	evtimer_add(s->ev_accept, &tv);
}

struct http_server *
http_server_start(struct worker *w, int public_fd, int admin_fd)
{
	struct http_server *s = calloc(1, sizeof(*s));
	int fds[2] = {public_fd, admin_fd};

	if (s == NULL)
		return NULL;
	s->w = w;
	s->base = w->base;
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->kicked);
	pool_init(&s->conn_pool, "conn", sizeof(struct conn), 4096, conn_dtor);
	pool_init(&s->rbuf_pool, "request", sizeof(struct rbuf), 1024, rbuf_dtor);
	pool_init(&s->obuf_pool, "queued_io", sizeof(struct obuf), 1024, obuf_dtor);
	s->scratch = malloc(READ_CHUNK);
	s->ev_accept = evtimer_new(w->base, on_accept_resume, s);
	s->ev_kick = event_new(w->base, -1, 0, on_kick, s);
	if (s->scratch == NULL || s->ev_accept == NULL || s->ev_kick == NULL)
		goto fail;
	/* the parser's own bound is a backstop; ours are exact */
	httpp_set_max_head((uint32_t)w->cfg->max_header_size + 1024);
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		s->lev[i] = evconnlistener_new(w->base, on_accept, s, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, -1,
		                               fds[i]);
		if (s->lev[i] == NULL)
			goto fail;
		evconnlistener_set_error_cb(s->lev[i], on_accept_error);
	}
	return s;
fail:
	http_server_free(s);
	return NULL;
}

void
http_server_drain(struct http_server *s)
{
	struct conn *c, *next;

	if (s == NULL || s->draining)
		return;
	s->draining = true;
	for (int i = 0; i < 2; i++) {
		if (s->lev[i] != NULL)
			evconnlistener_free(s->lev[i]);
		s->lev[i] = NULL;
	}
	evtimer_del(s->ev_accept);
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->phase == PH_IDLE && queued(c) == 0 && c->stash == NULL)
			conn_finish(c);
		else
			c->closing = true;
	}
}

uint32_t
http_server_connections(const struct http_server *s)
{
	return s != NULL ? s->nconns : 0;
}

void
http_server_get_stats(const struct http_server *s, struct http_server_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return;
	out->connections = s->nconns;
	out->accepted = s->accepted;
	out->refused = s->refused;
	out->accept_pauses = s->pauses;
}

void
http_server_free(struct http_server *s)
{
	struct conn *c;

	if (s == NULL)
		return;
	s->draining = true;
	for (int i = 0; i < 2; i++)
		if (s->lev[i] != NULL)
			evconnlistener_free(s->lev[i]);
	while ((c = TAILQ_FIRST(&s->conns)) != NULL) {
		struct http_req *r = &c->req;
		/* (the store was closed first, so no handler answers any more) */
		if (r->held && !r->replied && r->close_cb == NULL)
			r->held = false;
		conn_finish(c);
	}
	if (s->ev_accept != NULL)
		event_free(s->ev_accept);
	if (s->ev_kick != NULL)
		event_free(s->ev_kick);
	pool_drain(&s->conn_pool);
	pool_drain(&s->rbuf_pool);
	pool_drain(&s->obuf_pool);
	free(s->scratch);
	free(s);
}
