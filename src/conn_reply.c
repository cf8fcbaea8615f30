/*
 * The reply API of the connection layer (src/http.h): what a handler asks
 * of its request, plain replies, streamed replies, and streamed request
 * bodies with backpressure. Builds on src/conn.c's connections.
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
void
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


