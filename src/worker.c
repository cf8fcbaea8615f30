/*
 * A worker process. Everything that must not cross fork() is made here:
 * the event_base, the HTTP server on the inherited listening sockets, the
 * database connections, the json-c tokener and the object pools. Signals
 * are libevent evsignals: SIGTERM drains (stop accepting, close idle
 * connections, finish the others, exit), SIGINT/SIGQUIT stop at once.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "evlib.h"
#include "http.h"
#include "log.h"
#include "profile.h"
#include "proctitle.h"
#include "resp.h"
#include "rpc.h"
#include "shm.h"
#include "sse.h"
#include "store.h"
#include "worker.h"

/* One more than the container limit: json-c counts the leaf value as a
 * level; rpc.c checks the 64-container limit itself. */
#define MAX_DEPTH 65

static void
stop_now(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;

	log_info("worker %u stopping on %s", w->slot + 1, log_signal_name((int)sig));
	event_base_loopbreak(w->base);
}

void
worker_publish_stats(struct worker *w)
{
	uint64_t gets = 0, misses = 0, in_use = 0;
	struct http_server_stats hs;

	w->me->st.db_connections = (uint64_t)w->store->ops->connections(w->store);
	for (struct pool *p = pool_first(); p != NULL; p = p->next) {
		gets += p->gets;
		misses += p->misses;
		in_use += p->in_use;
	}
	w->me->st.pool_gets = gets;
	w->me->st.pool_misses = misses;
	w->me->st.pool_in_use = in_use;
	http_server_get_stats(w->http, &hs);
	w->me->st.http_connections = hs.connections;
	w->me->st.http_accepted = hs.accepted;
	w->me->st.http_refused = hs.refused;
	w->me->st.http_accept_pauses = hs.accept_pauses;
}

/* Periodic: publish gauges; when draining, exit once nothing is in flight. */
static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	worker_publish_stats(w);
	http_access_log_flush();
	if (w->draining && (http_server_connections(w->http) == 0 || now_unix_us() >= w->drain_deadline_us)) {
		if (http_server_connections(w->http) != 0)
			log_warn("worker %u: shutdown timeout with %u connection(s) still open (%llu request(s) in flight)",
			         w->slot + 1, http_server_connections(w->http),
			         (unsigned long long)w->me->st.requests_in_flight);
		event_base_loopbreak(w->base);
	}
}

static void
drain(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;

	if (w->draining)
		return;
	log_info("worker %u draining", w->slot + 1);
	w->draining = true;
	w->drain_deadline_us = now_unix_us() + w->cfg->shutdown_timeout * 1000000;
	/* Subscriptions never end on their own: end them now (D13). */
	sse_drain(w);
	http_server_drain(w->http);
	tick(-1, 0, w);
}

/* SIGHUP (reload) and SIGUSR1 (reopen logs), forwarded by the supervisor.
 * Each process has its own copy of the options and its own log descriptor. */
static void
reload(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	char err[512];

	if (log_reopen() != 0)
		log_error("worker %u: cannot reopen the log file", w->slot + 1);
	http_access_log_reopen();
	if (sig != SIGHUP)
		return;
	/* Quietly: the supervisor has already reported what was ignored, or
	 * why the reload failed (then nothing changes here either). */
	log_setup("error", w->cfg->log_format);
	(void)config_reload((struct config *)w->cfg, err, sizeof(err));
	log_setup(w->cfg->log_level, w->cfg->log_format);
	http_access_log_switch(w->cfg->access_log);
	log_debug("worker %u reloaded", w->slot + 1);
}

int
worker_main(const struct config *cfg, const struct store_backend *backend, const struct store_cfg *scfg,
            struct shm *shm, uint32_t slot, int listen_fd, int admin_fd)
{
	struct worker wk, *w = &wk;
	struct store_cfg scfg_own;
	struct event *ticker;
	struct timeval one_sec = {1, 0};
	char name[16];
	int rc = 0;

	memset(w, 0, sizeof(*w));
	w->slot = slot;
	w->cfg = cfg;
	w->shm = shm;
	w->me = shm_worker(shm, slot);
	memset(&w->me->st, 0, sizeof(w->me->st));
	w->me->pid = getpid();
	w->me->started_us = now_unix_us();

	snprintf(name, sizeof(name), "eventodb w%u", slot + 1);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	proctitle_set("eventodb: worker %u", slot + 1);
	/* Die with the supervisor rather than linger as an orphan. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() == 1)
		return 1;
	signal(SIGPIPE, SIG_IGN);

	/* The C locale's own object as this thread's locale: json-c parses
	 * numbers in "C" and, unless the thread's locale already is that object,
	 * duplicates and creates one on every json_tokener_parse_ex (two heap
	 * allocations a request). glibc hands out the static C object without
	 * allocating, and never frees it; the process never calls setlocale, so
	 * nothing else changes. */
	{
		locale_t c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);

		if (c_locale == (locale_t)0 || uselocale(c_locale) == (locale_t)0)
			log_warn("worker %u: cannot switch to the C locale object: %s", slot + 1, strerror(errno));
	}
	w->base = event_base_new();
	w->tok = json_tokener_new_ex(MAX_DEPTH);
	if (w->base == NULL || w->tok == NULL) {
		log_error("worker %u: out of memory at start", slot + 1);
		return 2;
	}
	json_tokener_set_flags(w->tok, JSON_TOKENER_STRICT);
	pool_init(&w->ctx_pool, "rpc_ctx", sizeof(struct rpc_ctx), 1024, NULL);
	pool_init(&w->resp_pool, "resp", sizeof(struct resp), 1024, resp_free);

	scfg_own = *scfg;
	scfg_own.stats = &w->me->st;
	w->store = backend->open(w->base, &scfg_own);
	if (w->store == NULL) {
		log_error("worker %u: cannot set up the store", slot + 1);
		return 2;
	}
	if (sse_start(w) == NULL)
		return 2;

	if (http_access_log_open(cfg->access_log) != 0) {
		log_error("worker %u: cannot open the access log %s: %s", slot + 1, cfg->access_log, strerror(errno));
		return 2;
	}
	w->http = http_server_start(w, listen_fd, admin_fd);
	if (w->http == NULL) {
		log_error("worker %u: cannot accept on the listening socket: %s", slot + 1, strerror(errno));
		return 2;
	}

	w->ev_term = evsignal_new(w->base, SIGTERM, drain, w);
	w->ev_int = evsignal_new(w->base, SIGINT, stop_now, w);
	w->ev_quit = evsignal_new(w->base, SIGQUIT, stop_now, w);
	w->ev_hup = evsignal_new(w->base, SIGHUP, reload, w);
	w->ev_usr1 = evsignal_new(w->base, SIGUSR1, reload, w);
	ticker = event_new(w->base, -1, EV_PERSIST, tick, w);
	if (!w->ev_term || !w->ev_int || !w->ev_quit || !w->ev_hup || !w->ev_usr1 || !ticker) {
		log_error("worker %u: cannot set up events", slot + 1);
		return 2;
	}
	event_add(w->ev_term, NULL);
	event_add(w->ev_int, NULL);
	event_add(w->ev_quit, NULL);
	event_add(w->ev_hup, NULL);
	event_add(w->ev_usr1, NULL);
	event_add(ticker, &one_sec);
	if (profile_worker_start(w) != 0)
		return 2;

	w->me->ready = 1;
	log_debug("worker %u ready", slot + 1);
	if (event_base_dispatch(w->base) < 0)
		rc = 1;
	w->me->ready = 0;

	profile_worker_stop(w);
	/* The store first: closing it fails what is still queued, and those
	 * callbacks answer their requests while the connections still exist.
	 * Then the connections (streams' close callbacks run), then the
	 * subscriptions they belonged to. */
	w->store->ops->close(w->store);
	http_server_free(w->http);
	w->http = NULL;
	sse_stop(w);
	http_access_log_close();
	event_free(ticker);
	event_free(w->ev_term);
	event_free(w->ev_int);
	event_free(w->ev_quit);
	event_free(w->ev_hup);
	event_free(w->ev_usr1);
	json_tokener_free(w->tok);
	pool_drain(&w->ctx_pool);
	pool_drain(&w->resp_pool);
	event_base_free(w->base);
	w->me->pid = 0;
	return rc;
}
