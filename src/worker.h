/* A worker process: one event_base, the HTTP connections of the inherited
 * listeners, its own database connections, pools and stats slot. */
#ifndef EVENTODB_WORKER_H
#define EVENTODB_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

struct config;
struct shm;
struct shm_worker;
struct store;
struct event_base;
struct http_server;
struct json_tokener;
struct event;
struct sse;

struct worker {
	uint32_t slot;
	const struct config *cfg;
	struct shm *shm;
	struct shm_worker *me;       /* this worker's stats slot */
	struct event_base *base;
	struct http_server *http;    /* the connections (conn.c) */
	struct store *store;
	struct json_tokener *tok;    /* reused for every request body */
	struct pool ctx_pool;        /* struct rpc_ctx */
	struct pool resp_pool;       /* struct resp */
	struct sse *sse;             /* live subscriptions (sse.c) */
	struct event *ev_term, *ev_int, *ev_quit, *ev_hup, *ev_usr1, *ev_drain;
	bool draining;
	int64_t drain_deadline_us;
};

/* Copies this worker's gauges and process-local counters (pools,
 * connections, database queue) into its stats slot; once a second, and
 * before a scrape. */
void worker_publish_stats(struct worker *w);

/* Runs a worker until it is told to stop; returns the process exit code
 * (2 = fatal configuration error, the supervisor must not respawn). */
struct store_backend;
struct store_cfg;
int worker_main(const struct config *cfg, const struct store_backend *backend, const struct store_cfg *scfg,
                struct shm *shm, uint32_t slot, int listen_fd, int admin_fd);

#endif
