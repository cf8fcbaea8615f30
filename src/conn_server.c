/*
 * Accepting, for the connection layer: the per-worker HTTP server on the
 * inherited listening sockets (public and admin), the connection limit
 * (503 past --max-connections), the pause at the descriptor limit, drain
 * and exit.
 *
 * Every worker waits on the same listening socket, and each wake-up
 * accepts ONE connection: a burst of connects (a client opening its pool
 * of 16) then spreads over the workers that are awake instead of landing
 * whole on the first one to run, which would leave the other cores idle
 * for as long as those connections live. What is left in the backlog keeps
 * the socket readable, so the loop comes straight back for it.
 *
 * One accept per wake-up is not enough on its own: the worker whose CPU is
 * free wakes first and wins every race of a burst. So each worker publishes
 * its open connections in the shared region, and one that has two more
 * than the least loaded worker that is accepting leaves the connection to
 * it: it stops watching the socket for ACCEPT_DEFER_US, then takes what is
 * still waiting whatever the counts (a busy or stuck worker delays a
 * connection by that much at most, never refuses it; after
 * ACCEPT_UNHONORED_MAX such delays in a row it stops leaving connections to
 * others for ACCEPT_BALANCE_OFF_US). The admin listener is not balanced.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
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
	conn_publish_count(s);
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

static void on_accept_error(struct http_server *s, int err);

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
conn_publish_count(struct http_server *s)
{
	if (s->w->me != NULL)
		s->w->me->conns = s->nconns;
}

static void
set_accepting(struct http_server *s, bool on)
{
	if (s->w->me != NULL)
		s->w->me->accepting = on;
}

/* Whether another worker that accepts has at least two connections fewer. */
static bool
better_worker(const struct http_server *s)
{
	struct shm *shm = s->w->shm;
	uint32_t n;

	if (shm == NULL || s->w->me == NULL || (n = shm_header(shm)->nworkers) < 2 || s->nconns < 2)
		return false;
	if (s->balance_off_until_us != 0 && mono_us() < s->balance_off_until_us)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const struct shm_worker *o = shm_worker(shm, i);

		if (o != s->w->me && o->ready && o->accepting && o->conns + 2 <= s->nconns)
			return true;
	}
	return false;
}

static void
accept_one(struct http_server *s, evutil_socket_t lfd, bool after_defer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (after_defer) {
		/* the connection left to a less loaded worker was still there:
		 * after a few of those in a row that worker is not taking any
		 * (stopped, or slow), so stop leaving it connections for a while */
		if (fd < 0)
			s->unhonored = 0;
		else if (++s->unhonored >= ACCEPT_UNHONORED_MAX) {
			s->unhonored = 0;
			s->balance_off_until_us = mono_us() + ACCEPT_BALANCE_OFF_US;
		}
	}
	if (fd < 0) {
		/* another worker took it, or the client gave up: nothing to do */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED &&
		    errno != EPROTO)
			on_accept_error(s, errno);
		return;
	}
	s->accept_pause_ms = 0; /* an accept worked: the next pause starts short */
	conn_open(s, fd, (struct sockaddr *)&ss, lfd == s->lfd[HTTP_LISTENER_ADMIN] ? HTTP_LISTENER_ADMIN
	                                                                              : HTTP_LISTENER_PUBLIC);
}

/* The pause after leaving a connection to a less loaded worker is over. If
 * that worker took it, the counts are even again; if they are not, it did
 * not, and this worker takes what is waiting itself. */
static void
on_defer_end(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	if (s->draining || s->accept_paused || s->lev[HTTP_LISTENER_PUBLIC] == NULL)
		return;
	if (event_add(s->lev[HTTP_LISTENER_PUBLIC], NULL) != 0)
		log_error("cannot resume accepting connections");
	if (better_worker(s))
		accept_one(s, s->lfd[HTTP_LISTENER_PUBLIC], true);
	else
		s->unhonored = 0;
}

static void
on_accept(evutil_socket_t lfd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)what;
	if (lfd == s->lfd[HTTP_LISTENER_PUBLIC] && better_worker(s)) {
		struct timeval tv = {0, ACCEPT_DEFER_US};

		event_del(s->lev[HTTP_LISTENER_PUBLIC]);
		evtimer_add(s->ev_defer, &tv);
		return;
	}
	accept_one(s, lfd, false);
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
	set_accepting(s, true);
	for (int i = 0; i < 2; i++)
		if (s->lev[i] != NULL && event_add(s->lev[i], NULL) != 0)
			log_error("cannot resume accepting connections");
}

/* accept() failed for a reason other than "try again": at the descriptor
 * limit the pending connection stays in the backlog and would wake us in a
 * tight loop, so stop accepting for a short, growing pause. */
static void
on_accept_error(struct http_server *s, int err)
{
	struct timeval tv;

	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
		log_warn("accept: %s", strerror(err));
		return;
	}
	for (int i = 0; i < 2; i++)
		if (s->lev[i] != NULL)
			event_del(s->lev[i]);
	evtimer_del(s->ev_defer);
	set_accepting(s, false);
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

/* This worker's copies of the listening sockets; the supervisor keeps its own. */
static void
listeners_close(struct http_server *s)
{
	set_accepting(s, false);
	if (s->ev_defer != NULL)
		evtimer_del(s->ev_defer);
	for (int i = 0; i < 2; i++) {
		if (s->lev[i] != NULL)
			event_free(s->lev[i]);
		s->lev[i] = NULL;
		if (s->lfd[i] >= 0)
			close(s->lfd[i]);
		s->lfd[i] = -1;
	}
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
	s->lfd[0] = s->lfd[1] = -1;
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->kicked);
	pool_init(&s->conn_pool, "conn", sizeof(struct conn), 4096, conn_dtor);
	pool_init(&s->rbuf_pool, "request", sizeof(struct rbuf), 1024, rbuf_dtor);
	pool_init(&s->obuf_pool, "queued_io", sizeof(struct obuf), 1024, obuf_dtor);
	s->scratch = malloc(READ_CHUNK);
	s->ev_accept = evtimer_new(w->base, on_accept_resume, s);
	s->ev_kick = event_new(w->base, -1, 0, on_kick, s);
	s->ev_defer = evtimer_new(w->base, on_defer_end, s);
	if (s->scratch == NULL || s->ev_accept == NULL || s->ev_kick == NULL || s->ev_defer == NULL)
		goto fail;
	/* the parser's own bound is a backstop; ours are exact */
	httpp_set_max_head((uint32_t)w->cfg->max_header_size + 1024);
	for (int i = 0; i < 2; i++) {
		s->lfd[i] = fds[i];
		if (fds[i] < 0)
			continue;
		if (evutil_make_socket_nonblocking(fds[i]) != 0 || evutil_make_socket_closeonexec(fds[i]) != 0)
			goto fail;
		s->lev[i] = event_new(w->base, fds[i], EV_READ | EV_PERSIST, on_accept, s);
		if (s->lev[i] == NULL || event_add(s->lev[i], NULL) != 0)
			goto fail;
	}
	conn_publish_count(s);
	set_accepting(s, s->lev[HTTP_LISTENER_PUBLIC] != NULL);
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
	listeners_close(s);
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
	listeners_close(s);
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
	if (s->ev_defer != NULL)
		event_free(s->ev_defer);
	pool_drain(&s->conn_pool);
	pool_drain(&s->rbuf_pool);
	pool_drain(&s->obuf_pool);
	free(s->scratch);
	free(s);
}

