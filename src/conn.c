/*
 * The connection layer: every HTTP/1.x connection of a worker, from accept
 * to close, on libevent (a read event per listening socket, one accept per
 * wake-up, see conn_server.c; two events per connection) with the request
 * parsed by libhttp-parser (src/httpp.c).
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

#include "conn_int.h"

static void conn_process(struct conn *c, const char *p, size_t n);

/* ---- small helpers ------------------------------------------------------- */

const struct config *
cfg_of(const struct conn *c)
{
	return c->srv->w->cfg;
}

struct timeval
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
void
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

void
stop_read(struct conn *c)
{
	event_del(c->rd);
	c->reading = false;
}

/* Has the connection looked at on the next loop turn (its stashed input
 * parsed, or its death finished), never from inside the caller. One event
 * for the whole server: activating a connection's own persistent read event
 * would make libevent re-add it, reading where we had stopped reading. */
void
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

void
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
void
count_in(struct http_req *r)
{
	if (!r->counted)
		r->c->srv->w->me->st.requests_in_flight++;
	r->counted = true;
}

void
count_out(struct http_req *r)
{
	if (r->counted)
		r->c->srv->w->me->st.requests_in_flight--;
	r->counted = false;
}

struct obuf *
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

void
obuf_put(struct http_server *s, struct obuf *o)
{
	if (o == NULL)
		return;
	wb_reset(&o->b, KEEP_OUT);
	pool_put(&s->obuf_pool, o);
}

void
obuf_dtor(void *obj)
{
	wb_free(&((struct obuf *)obj)->b);
}

void
rbuf_dtor(void *obj)
{
	struct rbuf *rb = obj;

	wb_free(&rb->head);
	wb_free(&rb->body);
	wb_free(&rb->extra);
}

void
conn_dtor(void *obj)
{
	struct conn *c = obj;

	if (c->rd != NULL)
		event_free(c->rd);
	if (c->wr != NULL)
		event_free(c->wr);
	c->rd = c->wr = NULL;
}

const char *
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

size_t
queued(const struct conn *c)
{
	return c->out != NULL ? c->out->b.len - c->out->off : 0;
}

/* Writes iov: straight to the socket when nothing is queued, the rest queued. */
void
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

void
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
void
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
	conn_publish_count(s);
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
void
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

void
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

void
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
void
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

const struct httpp_hooks conn_hooks = {
	.url = hook_url,
	.header_field = hook_field,
	.header_value = hook_value,
	.body = hook_body,
	.chunk = hook_chunk,
};

/* The value of header name in the finished head, or NULL. */
const char *
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

void
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

void
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
void
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

/* Backpressure for streamed bodies: stop reading while the handler has its fill. */
bool
body_full(const struct conn *c)
{
	const struct http_req *r = &c->req;

	return c->phase == PH_BODY && c->mode == HTTP_BODY_STREAM && r->rb != NULL &&
	       (!r->accepted || r->rb->body.len - r->rb->body_off >= HTTP_STREAM_BODY_CAP);
}

/* ---- request end ---------------------------------------------------------------- */

void
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

