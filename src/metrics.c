/*
 * GET /metrics: the Prometheus text exposition format, version 0.0.4
 * (SPEC D23), generated from the one stats declaration (src/stats.h).
 * Every STATS_FIELDS counter and gauge is summed over the workers; the
 * request latency is one histogram; RPC answers are counted per method and
 * status class; a few gauges are also given per worker; and the server's
 * own facts (start time, workers, restarts, the write ring). On the admin
 * listener it needs no token; on the public port, the admin token.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "http.h"
#include "jsonw.h"
#include "metrics.h"
#include "resp.h"
#include "ring.h"
#include "rpc.h"
#include "shm.h"
#include "stats.h"
#include "wbuf.h"
#include "worker.h"

#define P "eventodb_"

static void
family(struct wbuf *b, const char *name, const char *suffix, const char *type, const char *help)
{
	wb_lit(b, "# HELP " P);
	wb_add(b, name, strlen(name));
	wb_add(b, suffix, strlen(suffix));
	wb_lit(b, " ");
	wb_add(b, help, strlen(help));
	wb_lit(b, ".\n# TYPE " P);
	wb_add(b, name, strlen(name));
	wb_add(b, suffix, strlen(suffix));
	wb_lit(b, " ");
	wb_add(b, type, strlen(type));
	wb_lit(b, "\n");
}

static void
sample(struct wbuf *b, const char *name, const char *suffix, const char *labels, uint64_t v)
{
	char num[32];

	wb_lit(b, P);
	wb_add(b, name, strlen(name));
	wb_add(b, suffix, strlen(suffix));
	if (labels != NULL && labels[0] != '\0') {
		wb_lit(b, "{");
		wb_add(b, labels, strlen(labels));
		wb_lit(b, "}");
	}
	snprintf(num, sizeof(num), " %llu\n", (unsigned long long)v);
	wb_add(b, num, strlen(num));
}

static void
sample_f(struct wbuf *b, const char *name, const char *labels, double v)
{
	char num[48];

	wb_lit(b, P);
	wb_add(b, name, strlen(name));
	if (labels != NULL && labels[0] != '\0') {
		wb_lit(b, "{");
		wb_add(b, labels, strlen(labels));
		wb_lit(b, "}");
	}
	snprintf(num, sizeof(num), " %.6f\n", v);
	wb_add(b, num, strlen(num));
}

/* The histogram of request latency, in seconds, summed over workers. */
static void
latency(struct wbuf *b, struct shm *shm, uint32_t nworkers, const struct stats *sum)
{
	static const int64_t bounds[] = LATENCY_BOUNDS_US;
	uint64_t total = 0;
	char le[48];

	family(b, "request_duration_seconds", "", "histogram",
	       "Time from the first byte of a request to the head of its response");
	for (size_t i = 0; i < LATENCY_NBUCKETS; i++) {
		for (uint32_t w = 0; w < nworkers; w++)
			total += shm_worker(shm, w)->latency[i];
		if (i < sizeof(bounds) / sizeof(bounds[0]))
			snprintf(le, sizeof(le), "le=\"%g\"", (double)bounds[i] / 1e6);
		else
			snprintf(le, sizeof(le), "le=\"+Inf\"");
		sample(b, "request_duration_seconds", "_bucket", le, total);
	}
	sample_f(b, "request_duration_seconds_sum", NULL, (double)sum->latency_us_sum / 1e6);
	sample(b, "request_duration_seconds", "_count", NULL, total);
}

/* RPC answers per method and status class. */
static void
rpc_answers(struct wbuf *b, struct shm *shm, uint32_t nworkers)
{
	static const char *const classes[RPC_NCLASSES] = {"2xx", "4xx", "5xx"};
	char labels[96];
	const char *m;

	family(b, "rpc_responses", "_total", "counter", "RPC answers by method and status class");
	for (size_t i = 0; i < RPC_NMETHODS && (m = rpc_method_name(i)) != NULL; i++)
		for (size_t k = 0; k < RPC_NCLASSES; k++) {
			uint64_t v = 0;
			for (uint32_t w = 0; w < nworkers; w++)
				v += shm_worker(shm, w)->rpc_class[i][k];
			snprintf(labels, sizeof(labels), "method=\"%s\",class=\"%s\"", m, classes[k]);
			sample(b, "rpc_responses", "_total", labels, v);
		}
}

/* A few gauges per worker, where which worker matters (an imbalance). */
static void
per_worker(struct wbuf *b, struct shm *shm, uint32_t nworkers)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} g[] = {
		{"worker_connections", "Open client connections of a worker", offsetof(struct stats, http_connections)},
		{"worker_requests_in_flight", "Requests a worker is handling", offsetof(struct stats, requests_in_flight)},
		{"worker_sse_subscribers", "Live subscriptions on a worker", offsetof(struct stats, sse_subscribers)},
		{"worker_db_connections", "Open database connections of a worker", offsetof(struct stats, db_connections)},
	};
	char labels[32];

	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		family(b, g[i].name, "", "gauge", g[i].help);
		for (uint32_t w = 0; w < nworkers; w++) {
			const struct shm_worker *sw = shm_worker(shm, w);
			snprintf(labels, sizeof(labels), "worker=\"%u\"", w + 1);
			sample(b, g[i].name, "", labels, *(const uint64_t *)((const char *)&sw->st + g[i].off));
		}
	}
	family(b, "worker_up", "", "gauge", "1 while a worker serves requests");
	for (uint32_t w = 0; w < nworkers; w++) {
		snprintf(labels, sizeof(labels), "worker=\"%u\"", w + 1);
		sample(b, "worker_up", "", labels, shm_worker(shm, w)->ready != 0);
	}
}

void
metrics_write(struct shm *shm, struct wbuf *b)
{
	struct shm_header *h = shm_header(shm);
	struct stats sum;
	struct ring_stats rs;

	shm_stats_sum(shm, &sum);
#define X(name, type, help)                                                                                            \
	if (type != STATS_INTERNAL) {                                                                                  \
		family(b, #name, type == STATS_COUNTER ? "_total" : "", type == STATS_COUNTER ? "counter" : "gauge",   \
		       help);                                                                                          \
		sample(b, #name, type == STATS_COUNTER ? "_total" : "", NULL, sum.name);                               \
	}
#define COUNTER STATS_COUNTER
#define GAUGE STATS_GAUGE
#define INTERNAL STATS_INTERNAL
	STATS_FIELDS(X)
#undef COUNTER
#undef GAUGE
#undef INTERNAL
#undef X
	latency(b, shm, h->nworkers, &sum);
	rpc_answers(b, shm, h->nworkers);
	per_worker(b, shm, h->nworkers);
	ring_get_stats(shm, &rs);
	family(b, "write_ring_head_bytes", "", "gauge", "Bytes ever appended to the write ring (its head offset)");
	sample(b, "write_ring_head_bytes", "", NULL, rs.head);
	family(b, "write_ring_size_bytes", "", "gauge", "Size of the write ring");
	sample(b, "write_ring_size_bytes", "", NULL, rs.size);
	family(b, "write_ring_appends", "_total", "counter", "Writes appended to the write ring");
	sample(b, "write_ring_appends", "_total", NULL, rs.appends);
	family(b, "write_ring_resync_requests", "_total", "counter",
	       "Times every worker was asked to resync its subscribers from the database");
	sample(b, "write_ring_resync_requests", "_total", NULL, rs.resyncs);
	family(b, "workers", "", "gauge", "Worker processes configured");
	sample(b, "workers", "", NULL, h->nworkers);
	family(b, "worker_restarts", "_total", "counter", "Workers respawned after they died");
	sample(b, "worker_restarts", "_total", NULL, h->worker_restarts);
	family(b, "namespaces", "", "gauge", "Namespaces in the shared table");
	sample(b, "namespaces", "", NULL, h->ns_count);
	family(b, "process_start_time_seconds", "", "gauge", "Start time of the server since the Unix epoch in seconds");
	sample_f(b, "process_start_time_seconds", NULL, (double)h->started_us / 1e6);
	family(b, "build_info", "", "gauge", "The server's version (always 1)");
	sample(b, "build_info", "", "version=\"" PACKAGE_VERSION "\"", 1);
}

void
metrics_handle(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	struct resp *r;

	if (auth_require_admin(w, req) != 0)
		return;
	r = resp_get(w);
	if (r == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "Out of memory", NULL);
		return;
	}
	/* this worker's gauges are current; the others' as of their last tick */
	worker_publish_stats(w);
	metrics_write(w->shm, &r->buf);
	if (r->buf.failed)
		http_send_error(req, 500, "INTERNAL_ERROR", "Out of memory", NULL);
	else
		http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", r->buf.p, r->buf.len);
	resp_put(w, r);
}
