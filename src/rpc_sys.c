/* sys.version and sys.health: the build version, and the real backend,
 * worker count and open database connections (SPEC D3). */
#include "autoconf.h"


#include "http.h"
#include "jsonw.h"
#include "resp.h"
#include "rpc.h"
#include "shm.h"
#include "worker.h"

void
rpc_sys_version(struct rpc_ctx *c)
{
	jw_lit(&c->resp->buf, "\"" PACKAGE_VERSION "\"");
	rpc_ok(c);
}

void
rpc_sys_health(struct rpc_ctx *c)
{
	struct wbuf *b = &c->resp->buf;
	struct stats sum;
	uint32_t ready = 0, n = shm_header(c->w->shm)->nworkers;

	/* This worker's gauge is current; the others' are as of their last change. */
	c->w->me->st.db_connections = (uint64_t)c->w->store->ops->connections(c->w->store);
	shm_stats_sum(c->w->shm, &sum);
	for (uint32_t i = 0; i < n; i++)
		ready += shm_worker(c->w->shm, i)->ready != 0;
	jw_lit(b, "{\"backend\":");
	jw_cstr(b, c->w->store->ops->name);
	jw_lit(b, ",\"connections\":");
	jw_i64(b, (int64_t)sum.db_connections);
	/* "degraded": the server answers but no database connection is up. */
	if (sum.db_connections > 0)
		jw_lit(b, ",\"status\":\"ok\",\"workers\":");
	else
		jw_lit(b, ",\"status\":\"degraded\",\"workers\":");
	jw_i64(b, ready);
	jw_lit(b, "}");
	rpc_ok(c);
}
