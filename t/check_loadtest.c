/* Unit tests for the load tester's latency histogram (src/loadtest/hist.c):
 * bucket arithmetic, precision against exact quantiles, merging, edges. */
#include "autoconf.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loadtest/hist.h"

static struct lt_hist h1, h2, h3;

/* xorshift64*: a fixed sequence, so a failure can be reproduced */
static uint64_t rng = 88172645463325252ull;

static uint64_t
next_rand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

START_TEST(test_buckets_cover_every_value)
{
	/* every value lies in its bucket, buckets are contiguous and narrow */
	for (unsigned i = 0; i + 1 < LT_HIST_BUCKETS; i++) {
		ck_assert_uint_eq(lt_hist_low(i) + lt_hist_width(i), lt_hist_low(i + 1));
		ck_assert_uint_eq(lt_hist_index(lt_hist_low(i)), i);
		ck_assert_uint_eq(lt_hist_index(lt_hist_low(i) + lt_hist_width(i) - 1), i);
		if (lt_hist_low(i) >= 256)
			ck_assert_uint_le(lt_hist_width(i) * 128, lt_hist_low(i));
	}
	for (uint64_t v = 0; v < 256; v++)
		ck_assert_uint_eq(lt_hist_width(lt_hist_index(v)), 1);
	/* beyond the range: the last bucket, not out of bounds */
	ck_assert_uint_eq(lt_hist_index(UINT64_MAX), LT_HIST_BUCKETS - 1);
	ck_assert_uint_eq(lt_hist_index((uint64_t)1 << 50), LT_HIST_BUCKETS - 1);
}
END_TEST

START_TEST(test_quantiles_within_precision)
{
	enum { N = 20000 };
	static uint64_t v[N];
	const double qs[] = {0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999};
	uint64_t sum = 0;

	lt_hist_reset(&h1);
	/* log-uniform from 10 us to 1 s, like real latencies */
	for (int i = 0; i < N; i++) {
		double x = (double)(next_rand() >> 11) / 9007199254740992.0;

		v[i] = (uint64_t)(1e4 * pow(1e5, x));
		sum += v[i];
		lt_hist_record(&h1, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp_u64);
	ck_assert_uint_eq(h1.count, N);
	ck_assert_uint_eq(h1.min_ns, v[0]);
	ck_assert_uint_eq(h1.max_ns, v[N - 1]);
	ck_assert_double_eq_tol(lt_hist_mean(&h1), (double)sum / N, 1e-6);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		/* the exact q-quantile: the ceil(q N)-th smallest value */
		uint64_t exact = v[(size_t)ceil(qs[i] * N - 1e-9) - 1];
		uint64_t got = lt_hist_quantile(&h1, qs[i]);

		ck_assert_msg(fabs((double)got - (double)exact) <= (double)exact / 256.0 + 1,
		              "q=%g: %llu, exact %llu", qs[i], (unsigned long long)got, (unsigned long long)exact);
	}
	ck_assert_uint_eq(lt_hist_quantile(&h1, 1.0), v[N - 1]);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.0), v[0]);
}
END_TEST

START_TEST(test_small_exact_and_ordered)
{
	lt_hist_reset(&h1);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.5), 0);
	ck_assert_double_eq(lt_hist_mean(&h1), 0);
	/* 100 values 1..100 ns: exact below 256 ns */
	for (uint64_t i = 1; i <= 100; i++)
		lt_hist_record(&h1, i);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.50), 50);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.95), 95);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.99), 99);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.999), 100);
	/* one value: every quantile is that value exactly, bucket or not */
	lt_hist_reset(&h1);
	lt_hist_record(&h1, 123456789);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.5), 123456789);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 0.99), 123456789);
	/* a value past the range is clamped into the last bucket, max stays exact */
	lt_hist_record(&h1, (uint64_t)1 << 45);
	ck_assert_uint_eq(h1.max_ns, (uint64_t)1 << 45);
	ck_assert_uint_eq(lt_hist_quantile(&h1, 1.0), (uint64_t)1 << 45);
	ck_assert_uint_le(lt_hist_quantile(&h1, 0.5), lt_hist_quantile(&h1, 0.99));
}
END_TEST

START_TEST(test_merge_equals_one_histogram)
{
	lt_hist_reset(&h1);
	lt_hist_reset(&h2);
	lt_hist_reset(&h3);
	for (int i = 0; i < 5000; i++) {
		uint64_t x = next_rand() % 50000000;

		lt_hist_record(i % 3 ? &h1 : &h2, x);
		lt_hist_record(&h3, x);
	}
	lt_hist_merge(&h1, &h2);
	ck_assert_int_eq(memcmp(&h1, &h3, sizeof(h1)), 0);
	/* merging an empty one changes nothing, into an empty one copies */
	lt_hist_reset(&h2);
	lt_hist_merge(&h1, &h2);
	ck_assert_int_eq(memcmp(&h1, &h3, sizeof(h1)), 0);
	lt_hist_merge(&h2, &h3);
	ck_assert_int_eq(memcmp(&h2, &h3, sizeof(h2)), 0);
}
END_TEST

static Suite *
hist_suite(void)
{
	Suite *s = suite_create("loadtest");
	TCase *tc = tcase_create("hist");

	tcase_add_test(tc, test_buckets_cover_every_value);
	tcase_add_test(tc, test_quantiles_within_precision);
	tcase_add_test(tc, test_small_exact_and_ordered);
	tcase_add_test(tc, test_merge_equals_one_histogram);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(hist_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
