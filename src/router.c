/*
 * The router, above the handlers: which handler answers which path on which
 * listener, and how its body is read. Also the small fixed endpoints
 * (/health, /version, /debug/stats) and the 404.
 */
#include "autoconf.h"

#include <string.h>

#include "auth.h"
#include "http.h"
#include "import.h"
#include "jsonw.h"
#include "metrics.h"
#include "pool.h"
#include "profile_http.h"
#include "resp.h"
#include "ring.h"
#include "rpc.h"
#include "shm.h"
#include "sse.h"
#include "stats.h"
#include "worker.h"

#define PUB (1u << HTTP_LISTENER_PUBLIC)
#define ADM (1u << HTTP_LISTENER_ADMIN)

static void health(struct http_req *req);
static void version(struct http_req *req);
static void debug_stats(struct http_req *req);

static const struct http_route routes[] = {
	{"/rpc", false, PUB, HTTP_BODY_BUFFER, rpc_handle},
	{"/subscribe", false, PUB, HTTP_BODY_DISCARD, sse_handle},
	{"/import", false, PUB, HTTP_BODY_STREAM, import_handle},
	{"/health", false, PUB | ADM, HTTP_BODY_DISCARD, health},
	{"/version", false, PUB | ADM, HTTP_BODY_DISCARD, version},
	{"/metrics", false, PUB | ADM, HTTP_BODY_DISCARD, metrics_handle},
	{"/debug/stats", false, PUB | ADM, HTTP_BODY_DISCARD, debug_stats},
	{"/debug/pprof", true, PUB | ADM, HTTP_BODY_DISCARD, profile_http_handle},
	{NULL, false, 0, HTTP_BODY_DISCARD, NULL},
};

const struct http_route *
router_match(const char *path, enum http_listener on)
{
	for (const struct http_route *r = routes; r->path != NULL; r++) {
		if ((r->listeners & (1u << on)) == 0)
			continue;
		if (r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0 : strcmp(path, r->path) == 0)
			return r;
	}
	return NULL;
}

void
router_not_found(struct http_req *req)
{
	static const char body[] = "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"Endpoint not found\"}}\n";

	http_send(req, 404, "application/json", body, sizeof(body) - 1);
}

static void
health(struct http_req *req)
{
	static const char body[] = "{\"status\":\"ok\"}";

	http_send(req, 200, "application/json", body, sizeof(body) - 1);
}

static void
version(struct http_req *req)
{
	static const char body[] = "{\"version\":\"" PACKAGE_VERSION "\"}";

	http_send(req, 200, "application/json", body, sizeof(body) - 1);
}

/* GET /debug/stats: the summed stats slots and this worker's pools. */
static void
debug_stats(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	struct stats sum;
	struct resp *r;
	struct wbuf *b;
	bool first = true;

	if (auth_require_admin(w, req) != 0)
		return;
	r = resp_get(w);
	if (r == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "Out of memory", NULL);
		return;
	}
	b = &r->buf;
	shm_stats_sum(w->shm, &sum);
	jw_lit(b, "{\"workers\":");
	jw_i64(b, shm_header(w->shm)->nworkers);
	jw_lit(b, ",\"stats\":{");
#define X(name, type, help)                                                                                            \
	if (!first)                                                                                                    \
		jw_lit(b, ",");                                                                                        \
	first = false;                                                                                                 \
	jw_key(b, #name);                                                                                              \
	jw_i64(b, (int64_t)sum.name);
	STATS_FIELDS(X)
#undef X
	jw_lit(b, "},\"pools\":[");
	first = true;
	for (struct pool *p = pool_first(); p != NULL; p = p->next) {
		if (!first)
			jw_lit(b, ",");
		first = false;
		jw_lit(b, "{\"name\":");
		jw_cstr(b, p->name);
		jw_lit(b, ",\"worker\":");
		jw_i64(b, w->slot);
		jw_lit(b, ",\"gets\":");
		jw_i64(b, (int64_t)p->gets);
		jw_lit(b, ",\"misses\":");
		jw_i64(b, (int64_t)p->misses);
		jw_lit(b, ",\"in_use\":");
		jw_i64(b, (int64_t)p->in_use);
		jw_lit(b, ",\"high_water\":");
		jw_i64(b, (int64_t)p->high_water);
		jw_lit(b, "}");
	}
	jw_lit(b, "],");
	ring_stats_json(w->shm, b);
	jw_lit(b, "}\n");
	http_send_json(req, 200, b);
	resp_put(w, r);
}
