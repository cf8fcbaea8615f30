/*
 * Latency histogram of eventodb-loadtest: HdrHistogram-style log-linear
 * buckets over nanoseconds. Values below 256 ns are exact; above, each power
 * of two is split into 128 buckets, so a reported value (the bucket's middle)
 * is within 0.4 % of the true one, sub-millisecond latencies included. Fixed
 * size, no allocation, O(1) recording.
 */
#ifndef LT_HIST_H
#define LT_HIST_H

#include <stdint.h>

#define LT_HIST_SUB_BITS 7 /* 128 buckets per power of two */
#define LT_HIST_MAX_BITS 41 /* values up to 2^41 ns (about 36 minutes); more is clamped */
#define LT_HIST_BUCKETS                                                                                                \
	((2u << LT_HIST_SUB_BITS) + (LT_HIST_MAX_BITS - LT_HIST_SUB_BITS - 1) * (1u << LT_HIST_SUB_BITS))

struct lt_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t b[LT_HIST_BUCKETS];
};

void lt_hist_reset(struct lt_hist *h);
void lt_hist_record(struct lt_hist *h, uint64_t ns);
/* Adds every value of src to dst. */
void lt_hist_merge(struct lt_hist *dst, const struct lt_hist *src);
/* The q-quantile (0 < q <= 1): the smallest recorded value v such that at
 * least q of all values are <= v, as its bucket's middle, clamped to the
 * exact minimum and maximum. 0 for an empty histogram. */
uint64_t lt_hist_quantile(const struct lt_hist *h, double q);
/* Exact mean in nanoseconds; 0 when empty. */
double lt_hist_mean(const struct lt_hist *h);

/* Bucket arithmetic, exposed for the unit test. */
unsigned lt_hist_index(uint64_t ns);
uint64_t lt_hist_low(unsigned idx);
uint64_t lt_hist_width(unsigned idx);

#endif
