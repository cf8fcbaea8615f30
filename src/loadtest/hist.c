/*
 * Log-linear latency histogram (see hist.h). The first 2 * 128 buckets hold
 * 0..255 ns one by one; from there bucket i of power 2^k covers
 * [(128 + i) << s, (129 + i) << s) with s = k - 7.
 */
#include "autoconf.h"

#include <math.h>
#include <string.h>

#include "hist.h"

#define SUB (1u << LT_HIST_SUB_BITS)
#define LINEAR (2u * SUB)

void
lt_hist_reset(struct lt_hist *h)
{
	memset(h, 0, sizeof(*h));
}

unsigned
lt_hist_index(uint64_t ns)
{
	unsigned msb, shift;

	if (ns < LINEAR)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	if (msb >= LT_HIST_MAX_BITS)
		return LT_HIST_BUCKETS - 1;
	shift = msb - LT_HIST_SUB_BITS;
	return LINEAR + (shift - 1) * SUB + (unsigned)((ns >> shift) - SUB);
}

uint64_t
lt_hist_low(unsigned idx)
{
	unsigned shift;

	if (idx < LINEAR)
		return idx;
	shift = (idx - LINEAR) / SUB + 1;
	return (uint64_t)((idx - LINEAR) % SUB + SUB) << shift;
}

uint64_t
lt_hist_width(unsigned idx)
{
	if (idx < LINEAR)
		return 1;
	return (uint64_t)1 << ((idx - LINEAR) / SUB + 1);
}

void
lt_hist_record(struct lt_hist *h, uint64_t ns)
{
	if (h->count == 0 || ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->count++;
	h->sum_ns += ns;
	h->b[lt_hist_index(ns)]++;
}

void
lt_hist_merge(struct lt_hist *dst, const struct lt_hist *src)
{
	if (src->count == 0)
		return;
	if (dst->count == 0 || src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	for (unsigned i = 0; i < LT_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
}

uint64_t
lt_hist_quantile(const struct lt_hist *h, double q)
{
	uint64_t want, seen = 0, v;

	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min_ns;
	if (q >= 1)
		return h->max_ns;
	/* the epsilon keeps 0.95 * 20 from becoming 19.000000000000004 */
	want = (uint64_t)ceil(q * (double)h->count - 1e-9);
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < LT_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			v = lt_hist_low(i) + lt_hist_width(i) / 2;
			if (v < h->min_ns)
				v = h->min_ns;
			if (v > h->max_ns)
				v = h->max_ns;
			return v;
		}
	}
	return h->max_ns;
}

double
lt_hist_mean(const struct lt_hist *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}
