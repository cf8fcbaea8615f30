/*
 * The load tester's HTTP/1.1 client: one bufferevent per keep-alive
 * connection, responses parsed by libhttp-parser, one request in flight per
 * connection (the load is a closed loop, like wrk's). Bodies are only kept
 * when the caller wants them or the answer is not a 200, so the common path
 * copies nothing.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
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

struct lt_conn {
	struct event_base *base;
	const struct lt_target *t;
	struct bufferevent *bev;
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

static void
conn_close(struct lt_conn *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
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
read_cb(struct bufferevent *bev, void *arg)
{
	struct lt_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len, n;
	const char *data;
	enum http_errno e;

	while ((len = evbuffer_get_length(in)) > 0) {
		if (!c->busy) {
			fail(c, "unexpected data from the server");
			return;
		}
		len = evbuffer_get_contiguous_space(in);
		data = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
		n = http_parser_execute(&c->parser, &parser_settings, data, len);
		evbuffer_drain(in, n);
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			if (!c->keep_alive || evbuffer_get_length(in) > 0)
				conn_close(c);
			deliver(c, c->status, NULL);
			return;
		}
		if (e != HPE_OK) {
			char msg[160];

			snprintf(msg, sizeof(msg), "malformed response: %s", http_errno_description(e));
			fail(c, msg);
			return;
		}
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lt_conn *c = arg;
	char msg[400];

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		if (!c->busy) { /* an idle keep-alive connection: keep waiting */
			bufferevent_enable(bev, EV_READ | EV_WRITE);
			return;
		}
		snprintf(msg, sizeof(msg), "no answer within %ld.%03ld s", (long)c->timeout.tv_sec,
		         (long)c->timeout.tv_usec / 1000);
		fail(c, msg);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		if (c->busy) {
			/* a response delimited by the end of the connection ends here */
			http_parser_execute(&c->parser, &parser_settings, NULL, 0);
			if (c->complete) {
				conn_close(c);
				deliver(c, c->status, NULL);
				return;
			}
		}
		fail(c, "connection closed by the server before the answer");
		return;
	}
	snprintf(msg, sizeof(msg), "connection to %s: %s", c->t->hostport,
	         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	fail(c, msg);
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
	int fd, one = 1;

	fd = socket(c->t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* one small request at a time: do not let Nagle hold it back */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
		snprintf(err, errlen, "TCP_NODELAY: %s", strerror(errno));
		close(fd);
		return -1;
	}
	c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_set_timeouts(c->bev, &c->timeout, &c->timeout);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->t->addr, (int)c->t->addrlen) != 0) {
		snprintf(err, errlen, "connect to %s: %s", c->t->hostport, strerror(errno));
		conn_close(c);
		return -1;
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	opened++;
	return 0;
}

int
lt_conn_send(struct lt_conn *c, const char *req, size_t len, bool keep_body, char *err, size_t errlen)
{
	if (c->bev == NULL && conn_open(c, err, errlen) != 0)
		return -1;
	c->busy = true;
	c->complete = false;
	c->keep_alive = false;
	c->status = 0;
	c->keep_body = keep_body;
	c->want_body = keep_body;
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	if (bufferevent_write(c->bev, req, len) != 0) {
		c->busy = false;
		conn_close(c);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
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
