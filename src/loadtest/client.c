/*
 * The load tester's HTTP/1.1 client: non-blocking keep-alive sockets on the
 * libevent loop, responses parsed by libhttp-parser, one request in flight per
 * connection (the load is a closed loop, like wrk's). The common path is one
 * send() and one read() per request and no change to the epoll set: a request
 * is written straight to the socket (its buffer is empty in a closed loop),
 * and the read event stays registered. Bodies are only kept when the caller
 * wants them or the answer is not a 200, so nothing is copied otherwise.
 * (bufferevents cost two epoll_ctl, a writev, a readv and an ioctl per
 * request; that made the client dearer per request than wrk.)
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lt.h"

#define BODY_CAP (16u << 20) /* control answers (/debug/stats, allocs) are far smaller */

enum conn_state { C_CLOSED, C_CONNECTING, C_OPEN };

struct lt_conn {
	struct event_base *base;
	const struct lt_target *t;
	int fd;
	enum conn_state state;
	struct event *ev;  /* the socket: EV_READ, plus EV_WRITE while connecting or output is pending */
	short ev_what;     /* what ev waits for now */
	const char *out;   /* the unwritten rest of the request (the caller's buffer) */
	size_t out_len;
	http_parser parser;
	struct timeval timeout;
	lt_conn_cb cb;
	void *arg;
	struct evbuffer *body;
	int status;
	bool busy;
	bool keep_body;
	bool want_body;
	bool complete;
	bool keep_alive;
};

/* One read buffer for every connection: the loop is single-threaded and a
 * read is parsed before the next one. */
static char rbuf[64 * 1024];

static uint64_t opened;

uint64_t
lt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
lt_conn_opened(void)
{
	return opened;
}

/* ---- target ------------------------------------------------------------------ */

int
lt_target_parse(struct lt_target *t, const char *url, const char *token, char *err, size_t errlen)
{
	struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
	const char *scheme, *host, *path;
	size_t hl, pl;
	int n;

	memset(t, 0, sizeof(*t));
	if (u == NULL) {
		snprintf(err, errlen, "invalid --url %.200s", url);
		return -1;
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	path = evhttp_uri_get_path(u);
	if (scheme == NULL || strcasecmp(scheme, "http") != 0) {
		snprintf(err, errlen, "invalid --url %.200s: must start with http:// (https is not supported)", url);
		goto bad;
	}
	if (host == NULL || *host == '\0' || evhttp_uri_get_userinfo(u) != NULL || evhttp_uri_get_query(u) != NULL ||
	    evhttp_uri_get_fragment(u) != NULL) {
		snprintf(err, errlen, "invalid --url %.200s: want http://HOST[:PORT][/PATH]", url);
		goto bad;
	}
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') { /* IPv6 literal */
		host++;
		hl -= 2;
	}
	if (hl >= sizeof(t->host)) {
		snprintf(err, errlen, "invalid --url: host name too long");
		goto bad;
	}
	memcpy(t->host, host, hl);
	t->port = evhttp_uri_get_port(u);
	if (t->port < 0)
		t->port = 80;
	if (t->port == 0 || t->port > 65535) {
		snprintf(err, errlen, "invalid --url %.200s: bad port", url);
		goto bad;
	}
	n = strchr(t->host, ':') != NULL ? snprintf(t->hostport, sizeof(t->hostport), "[%s]:%d", t->host, t->port)
	                                 : snprintf(t->hostport, sizeof(t->hostport), "%s:%d", t->host, t->port);
	if (n < 0 || (size_t)n >= sizeof(t->hostport))
		goto toolong;
	pl = path != NULL ? strlen(path) : 0;
	while (pl > 0 && path[pl - 1] == '/')
		pl--;
	if (pl >= sizeof(t->base))
		goto toolong;
	if (pl > 0)
		memcpy(t->base, path, pl);
	if (token != NULL && *token != '\0') {
		/* a header value: printable ASCII without spaces, so nothing can be injected */
		for (const char *p = token; *p; p++)
			if (*p < 0x21 || *p > 0x7e) {
				snprintf(err, errlen, "invalid --token: it must be printable ASCII without spaces");
				goto bad;
			}
		n = snprintf(t->auth, sizeof(t->auth), "Authorization: Bearer %s\r\n", token);
		if (n < 0 || (size_t)n >= sizeof(t->auth)) {
			snprintf(err, errlen, "invalid --token: longer than %zu characters", sizeof(t->auth) - 32);
			goto bad;
		}
	}
	n = snprintf(t->rpc_prefix, sizeof(t->rpc_prefix),
	             "POST %s/rpc HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: ",
	             t->base, t->hostport, t->auth);
	if (n < 0 || (size_t)n >= sizeof(t->rpc_prefix))
		goto toolong;
	t->rpc_prefix_len = (size_t)n;
	evhttp_uri_free(u);
	return 0;
toolong:
	snprintf(err, errlen, "invalid --url: too long");
bad:
	evhttp_uri_free(u);
	return -1;
}

int
lt_target_resolve(struct lt_target *t, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", t->port);
	rc = getaddrinfo(t->host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, errlen, "cannot resolve %s: %s", t->host, rc != 0 ? gai_strerror(rc) : "no address");
		return -1;
	}
	memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
	t->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

size_t
lt_rpc_request(const struct lt_target *t, const char *body, size_t blen, char *out, size_t outlen)
{
	char num[24];
	int nl = snprintf(num, sizeof(num), "%zu\r\n\r\n", blen);
	size_t total = t->rpc_prefix_len + (size_t)nl + blen;

	if (total > outlen)
		return 0;
	memcpy(out, t->rpc_prefix, t->rpc_prefix_len);
	memcpy(out + t->rpc_prefix_len, num, (size_t)nl);
	memcpy(out + t->rpc_prefix_len + (size_t)nl, body, blen);
	return total;
}

/* ---- response parsing ---------------------------------------------------------- */

static int
on_headers_complete(http_parser *p)
{
	struct lt_conn *c = p->data;

	c->status = p->status_code;
	c->want_body = c->keep_body || c->status != 200;
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
	struct lt_conn *c = p->data;

	if (c->want_body && evbuffer_get_length(c->body) + len <= BODY_CAP)
		evbuffer_add(c->body, at, len);
	return 0;
}

static int
on_message_complete(http_parser *p)
{
	struct lt_conn *c = p->data;

	c->complete = true;
	c->keep_alive = http_should_keep_alive(p) != 0;
	/* stop here: the caller hands the answer over before parsing on */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- the socket --------------------------------------------------------------------- */

static void conn_event(evutil_socket_t fd, short what, void *arg);

static void
conn_close(struct lt_conn *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	c->ev = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_CLOSED;
	c->out_len = 0;
}

/* Waits for what (EV_READ, with or without EV_WRITE), the timeout restarted. */
static int
conn_wait(struct lt_conn *c, short what)
{
	if (c->ev != NULL && c->ev_what != what) {
		event_free(c->ev);
		c->ev = NULL;
	}
	if (c->ev == NULL) {
		c->ev = event_new(c->base, c->fd, what | EV_PERSIST, conn_event, c);
		if (c->ev == NULL)
			return -1;
		c->ev_what = what;
	}
	/* on a registered event only the timeout moves: no system call */
	return event_add(c->ev, &c->timeout);
}

/* Hands the answer (or the failure) to the owner. c may be reused or freed
 * by the callback, so nothing touches it afterwards. */
static void
deliver(struct lt_conn *c, int status, const char *reason)
{
	const char *body;
	size_t len;

	c->busy = false;
	if (status == 0) {
		evbuffer_drain(c->body, evbuffer_get_length(c->body));
		evbuffer_add(c->body, reason, strlen(reason));
	}
	len = evbuffer_get_length(c->body);
	body = len ? (const char *)evbuffer_pullup(c->body, -1) : "";
	c->cb(c, status, body, len, c->arg);
}

static void
fail(struct lt_conn *c, const char *reason)
{
	bool busy = c->busy;

	conn_close(c);
	if (busy)
		deliver(c, 0, reason);
}

static void
fail_errno(struct lt_conn *c, const char *what, int err)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "%s %s: %s", what, c->t->hostport, strerror(err));
	fail(c, msg);
}

/* Writes what is pending and waits for the socket to drain when it is full.
 * 0, or -1 with the reason in msg (the connection is then unusable). */
static int
conn_flush(struct lt_conn *c, char *msg, size_t msglen)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			snprintf(msg, msglen, "sending to %s: %s", c->t->hostport,
			         n < 0 ? strerror(errno) : "no progress");
			return -1;
		}
		c->out += n;
		c->out_len -= (size_t)n;
	}
	if (conn_wait(c, c->out_len > 0 ? EV_READ | EV_WRITE : EV_READ) != 0) {
		snprintf(msg, msglen, "cannot wait on the socket");
		return -1;
	}
	return 0;
}

static void
conn_read(struct lt_conn *c)
{
	ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
	size_t used;
	enum http_errno e;

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		fail_errno(c, "reading from", errno);
		return;
	}
	if (n == 0) {
		if (c->busy) {
			/* an answer delimited by the end of the connection ends here */
			http_parser_execute(&c->parser, &parser_settings, NULL, 0);
			if (c->complete) {
				conn_close(c);
				deliver(c, c->status, NULL);
				return;
			}
			fail(c, "connection closed by the server before the answer");
			return;
		}
		conn_close(c); /* an idle keep-alive connection the server ended */
		return;
	}
	if (!c->busy) {
		fail(c, "unexpected data from the server");
		return;
	}
	used = http_parser_execute(&c->parser, &parser_settings, rbuf, (size_t)n);
	e = HTTP_PARSER_ERRNO(&c->parser);
	if (e == HPE_PAUSED) {
		http_parser_pause(&c->parser, 0);
		/* anything after the answer was never asked for */
		if (!c->keep_alive || used < (size_t)n)
			conn_close(c);
		deliver(c, c->status, NULL);
		return;
	}
	if (e != HPE_OK) {
		char msg[160];

		snprintf(msg, sizeof(msg), "malformed response: %s", http_errno_description(e));
		fail(c, msg);
	}
}

static void
conn_event(evutil_socket_t fd, short what, void *arg)
{
	struct lt_conn *c = arg;
	char msg[400];

	if (what & EV_TIMEOUT) {
		if (!c->busy)
			return; /* an idle keep-alive connection: keep waiting */
		snprintf(msg, sizeof(msg), "no answer within %ld.%03ld s", (long)c->timeout.tv_sec,
		         (long)c->timeout.tv_usec / 1000);
		fail(c, msg);
		return;
	}
	if (c->state == C_CONNECTING && (what & EV_WRITE)) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			fail_errno(c, "connection to", err);
			return;
		}
		c->state = C_OPEN;
		if (conn_flush(c, msg, sizeof(msg)) != 0)
			fail(c, msg);
		return;
	}
	if ((what & EV_WRITE) && c->out_len > 0 && conn_flush(c, msg, sizeof(msg)) != 0) {
		fail(c, msg);
		return;
	}
	if (what & EV_READ)
		conn_read(c);
}

/* ---- connections ------------------------------------------------------------------ */

struct lt_conn *
lt_conn_new(struct event_base *base, const struct lt_target *t, double timeout_s, lt_conn_cb cb, void *arg)
{
	struct lt_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->body = evbuffer_new();
	if (c->body == NULL) {
		free(c);
		return NULL;
	}
	c->fd = -1;
	c->base = base;
	c->t = t;
	c->cb = cb;
	c->arg = arg;
	c->timeout.tv_sec = (time_t)timeout_s;
	c->timeout.tv_usec = (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6);
	return c;
}

static int
conn_open(struct lt_conn *c, char *err, size_t errlen)
{
	int one = 1;

	c->fd = socket(c->t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* one small request at a time: do not let Nagle hold it back */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
		snprintf(err, errlen, "TCP_NODELAY: %s", strerror(errno));
		conn_close(c);
		return -1;
	}
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	opened++;
	if (connect(c->fd, (struct sockaddr *)&c->t->addr, c->t->addrlen) == 0) {
		c->state = C_OPEN;
		return 0;
	}
	if (errno != EINPROGRESS) {
		snprintf(err, errlen, "connection to %s: %s", c->t->hostport, strerror(errno));
		conn_close(c);
		return -1;
	}
	c->state = C_CONNECTING;
	return 0;
}

int
lt_conn_send(struct lt_conn *c, const char *req, size_t len, bool keep_body, char *err, size_t errlen)
{
	if (c->state == C_CLOSED && conn_open(c, err, errlen) != 0)
		return -1;
	c->busy = true;
	c->complete = false;
	c->keep_alive = false;
	c->status = 0;
	c->keep_body = keep_body;
	c->want_body = keep_body;
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	c->out = req;
	c->out_len = len;
	/* a failure here is returned, never called back: the caller is still in its own call */
	if (c->state == C_OPEN && conn_flush(c, err, errlen) == 0)
		return 0;
	/* connecting: the socket turns writable when it is connected (or failed) */
	if (c->state == C_CONNECTING && conn_wait(c, EV_READ | EV_WRITE) == 0)
		return 0;
	if (c->state == C_CONNECTING)
		snprintf(err, errlen, "cannot wait on the socket");
	c->busy = false;
	conn_close(c);
	return -1;
}

void
lt_conn_free(struct lt_conn *c)
{
	if (c == NULL)
		return;
	conn_close(c);
	evbuffer_free(c->body);
	free(c);
}

/* ---- one-off requests ---------------------------------------------------------------- */

static void
fetch_done(struct lt_conn *c, int status, const char *body, size_t len, void *arg)
{
	struct lt_fetch *f = arg;

	f->status = status;
	if (status == 0) {
		snprintf(f->err, sizeof(f->err), "%.*s", (int)len, body);
		f->status = -1;
		return;
	}
	f->body = malloc(len + 1);
	if (f->body == NULL) {
		snprintf(f->err, sizeof(f->err), "out of memory");
		f->status = -1;
		return;
	}
	memcpy(f->body, body, len);
	f->body[len] = '\0';
	f->len = len;
}

void
lt_fetch_get(struct event_base *base, const struct lt_target *t, const char *path, double timeout_s,
             struct lt_fetch *f)
{
	struct lt_conn *c;
	char req[2048];
	int n;

	memset(f, 0, sizeof(*f));
	n = snprintf(req, sizeof(req), "GET %s%s HTTP/1.1\r\nHost: %s\r\n%s\r\n", t->base, path, t->hostport, t->auth);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		snprintf(f->err, sizeof(f->err), "request too long");
		return;
	}
	c = lt_conn_new(base, t, timeout_s, fetch_done, f);
	if (c == NULL) {
		snprintf(f->err, sizeof(f->err), "out of memory");
		return;
	}
	if (lt_conn_send(c, req, (size_t)n, true, f->err, sizeof(f->err)) != 0) {
		lt_conn_free(c);
		return;
	}
	/* fetch_done sets status (> 0, or -1 on failure) */
	while (f->status == 0 && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	if (f->status < 0)
		f->status = 0;
	lt_conn_free(c);
}

void
lt_fetch_clear(struct lt_fetch *f)
{
	free(f->body);
	memset(f, 0, sizeof(*f));
}
