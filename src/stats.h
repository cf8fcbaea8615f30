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
	X(db_connections)      /* gauge: open connections */                     \
	X(db_queue_waiting)    /* gauge: operations waiting for a connection */  \
	X(write_batches)       /* write transactions; a lone write is one of 1 */ \
	X(write_batch_msgs)    /* stream.writes in them */                       \
	X(write_batch_1)       /* transactions by writes: exactly 1 */          \
	X(write_batch_2)                                                         \
	X(write_batch_le_4)                                                      \
	X(write_batch_le_8)                                                      \
	X(write_batch_le_16)                                                     \
	X(write_batch_le_32)                                                     \
	X(write_batch_le_64)                                                     \
	X(write_batch_gt_64)                                                     \
	X(write_batch_retries) /* failed batches, rewritten one by one */      \
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

/* Counts one write transaction of n stream.writes (the stores call it). */
static inline void
stats_write_batch(struct stats *st, uint64_t n)
{
	if (st == NULL || n == 0)
		return;
	st->write_batches++;
	st->write_batch_msgs += n;
	if (n == 1)
		st->write_batch_1++;
	else if (n == 2)
		st->write_batch_2++;
	else if (n <= 4)
		st->write_batch_le_4++;
	else if (n <= 8)
		st->write_batch_le_8++;
	else if (n <= 16)
		st->write_batch_le_16++;
	else if (n <= 32)
		st->write_batch_le_32++;
	else if (n <= 64)
		st->write_batch_le_64++;
	else
		st->write_batch_gt_64++;
}

#endif
