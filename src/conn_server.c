/*
 * Accepting, for the connection layer: the per-worker HTTP server on the
 * inherited listening sockets (public and admin), the connection limit
 * (503 past --max-connections), the pause at the descriptor limit, drain
 * and exit.
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
	httpp_init(&c->parser, &conn_hooks, c);
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

