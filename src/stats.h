/*
 * Per-worker counters, declared once. STATS_FIELDS expands into the struct
 * in the shared region, the summing for sys.health and /debug/stats, the
 * JSON printing and the Prometheus exposition (/metrics, src/metrics.c)
 * (memcached's THREAD_STATS_FIELDS).
 *
 * X(name, type, help): type is COUNTER (only grows; exposed as
 * eventodb_<name>_total), GAUGE (a level; eventodb_<name>) or INTERNAL (in
 * /debug/stats only: what /metrics shows in another form). The request
 * latency histogram and the per-method RPC counts are arrays next to the
 * struct (struct shm_worker), declared below.
 */
#ifndef EVENTODB_STATS_H
#define EVENTODB_STATS_H

#include <stdint.h>

#define STATS_FIELDS(X)                                                                                                \
	X(http_requests, COUNTER, "HTTP requests received (every path)")                                             \
	X(http_2xx, COUNTER, "HTTP responses with a 2xx status")                                                     \
	X(http_4xx, COUNTER, "HTTP responses with a 4xx status")                                                     \
	X(http_5xx, COUNTER, "HTTP responses with a 5xx status")                                                     \
	X(http_accepted, COUNTER, "client connections accepted")                                                     \
	X(http_refused, COUNTER, "client connections refused over --max-connections")                                \
	X(http_accept_pauses, COUNTER, "pauses of accepting at the descriptor limit")                                \
	X(http_connections, GAUGE, "open client connections")                                                        \
	X(requests_in_flight, GAUGE, "requests being handled (subscriptions excluded)")                              \
	X(rpc_requests, COUNTER, "RPC requests dispatched")                                                          \
	X(rpc_errors, COUNTER, "RPC requests answered with an error")                                                \
	X(rpc_stream_write, COUNTER, "stream.write calls")                                                           \
	X(rpc_stream_get, COUNTER, "stream.get calls")                                                               \
	X(rpc_stream_last, COUNTER, "stream.last calls")                                                             \
	X(rpc_stream_version, COUNTER, "stream.version calls")                                                       \
	X(rpc_category_get, COUNTER, "category.get calls")                                                           \
	X(rpc_ns, COUNTER, "ns.* calls")                                                                             \
	X(rpc_sys, COUNTER, "sys.* calls")                                                                           \
	X(version_conflicts, COUNTER, "writes refused for their expectedVersion")                                    \
	X(index_conflicts, COUNTER, "version conflicts answered from the shared stream index")                       \
	X(latency_us_sum, INTERNAL, "total request latency in microseconds (the histogram's sum)")                   \
	X(db_connections, GAUGE, "open database connections")                                                        \
	X(db_queue_waiting, GAUGE, "database operations waiting for a connection")                                   \
	X(write_batches, COUNTER, "write transactions (a lone stream.write is a batch of 1)")                         \
	X(write_batch_msgs, COUNTER, "stream.writes committed in write batches")                                     \
	X(write_batch_1, COUNTER, "write transactions of exactly 1 stream.write")                                    \
	X(write_batch_2, COUNTER, "write transactions of 2 stream.writes")                                           \
	X(write_batch_le_4, COUNTER, "write transactions of 3 to 4 stream.writes")                                   \
	X(write_batch_le_8, COUNTER, "write transactions of 5 to 8 stream.writes")                                   \
	X(write_batch_le_16, COUNTER, "write transactions of 9 to 16 stream.writes")                                 \
	X(write_batch_le_32, COUNTER, "write transactions of 17 to 32 stream.writes")                                \
	X(write_batch_le_64, COUNTER, "write transactions of 33 to 64 stream.writes")                                \
	X(write_batch_gt_64, COUNTER, "write transactions of more than 64 stream.writes")                            \
	X(write_batch_retries, COUNTER, "write batches that failed as a whole and were written again one by one")    \
	X(pool_gets, COUNTER, "objects taken from the per-worker pools")                                             \
	X(pool_misses, COUNTER, "pool gets that had to allocate")                                                    \
	X(pool_in_use, GAUGE, "pooled objects in use")                                                               \
	X(sse_subscribers, GAUGE, "live subscriptions (GET /subscribe)")                                             \
	X(sse_pokes, COUNTER, "poke events written to subscribers")                                                  \
	X(sse_coalesced, COUNTER, "pokes merged into a newer one for a slow subscriber")                             \
	X(sse_catchups, COUNTER, "catch-up queries to the store for subscribers")                                    \
	X(sse_resyncs, COUNTER, "store catch-ups of every subscriber of a worker (overrun or resync)")               \
	X(sse_overruns, COUNTER, "times a worker was overrun by the write ring")                                     \
	X(sse_refused, COUNTER, "subscriptions refused over the per-namespace limit")                                \
	X(import_records, COUNTER, "records committed by POST /import")

#define STATS_COUNTER 1
#define STATS_GAUGE 2
#define STATS_INTERNAL 3

struct stats {
#define X(name, type, help) uint64_t name;
	STATS_FIELDS(X)
#undef X
};

/* Request latency histogram: upper bounds in microseconds (time to the
 * response head; a subscription counts until its head). One more bucket
 * (+Inf) follows the last bound. */
#define LATENCY_BOUNDS_US {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000}
#define LATENCY_NBUCKETS 14

/* RPC requests per method and status class (2xx, 4xx, 5xx). */
#define RPC_NMETHODS 16
#define RPC_NCLASSES 3

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
