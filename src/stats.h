/*
 * Per-worker counters, declared once. STATS_FIELDS expands into the struct
 * in the shared region, the summing for sys.health and /debug/stats, and the
 * JSON printing (memcached's THREAD_STATS_FIELDS).
 */
#ifndef EVENTODB_STATS_H
#define EVENTODB_STATS_H

#include <stdint.h>

#define STATS_FIELDS(X)                                                          \
	X(http_requests)       /* every request routed */                        \
	X(http_2xx)                                                              \
	X(http_4xx)                                                              \
	X(http_5xx)                                                              \
	X(rpc_requests)                                                          \
	X(rpc_errors)                                                            \
	X(rpc_stream_write)                                                      \
	X(rpc_stream_get)                                                        \
	X(rpc_stream_last)                                                       \
	X(rpc_stream_version)                                                    \
	X(rpc_category_get)                                                      \
	X(rpc_ns)                                                                \
	X(rpc_sys)                                                               \
	X(version_conflicts)                                                     \
	X(index_conflicts)     /* of which answered from the stream index */     \
	X(latency_le_1ms)      /* request latency histogram, cumulative */       \
	X(latency_le_5ms)                                                        \
	X(latency_le_25ms)                                                       \
	X(latency_le_100ms)                                                      \
	X(latency_le_500ms)                                                      \
	X(latency_gt_500ms)                                                      \
	X(requests_in_flight)  /* gauge */                                       \
	X(http_connections)    /* gauge: open client connections */              \
	X(db_connections)      /* gauge: open connections */                     \
	X(db_queue_waiting)    /* gauge: operations waiting for a connection */  \
	X(pool_gets)                                                             \
	X(pool_misses)         /* gets that had to allocate */                   \
	X(pool_in_use)         /* gauge */                                       \
	X(sse_subscribers)     /* gauge */                                       \
	X(sse_pokes)           /* poke events written */                         \
	X(sse_coalesced)       /* pokes merged into a newer one (slow client) */ \
	X(sse_catchups)        /* catch-up queries to the store */               \
	X(sse_resyncs)         /* ring overruns and resyncs (store catch-up) */  \
	X(sse_refused)         /* subscriptions over the per-namespace limit */

struct stats {
#define X(name) uint64_t name;
	STATS_FIELDS(X)
#undef X
};

#endif
