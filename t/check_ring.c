/* Unit tests for the shared write ring, stream index and subscription
 * counts (src/ring.c), on a real shared region. */
#include "autoconf.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ring.h"
#include "shm.h"

#define RING_BYTES 4096

static struct shm *
region(void)
{
	struct shm *s = shm_create_ex(2, 16, ring_index_size(), ring_part_size(2, 16, RING_BYTES));
	uint8_t hash[32] = {1};

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(ring_init(s, RING_BYTES), 0);
	ck_assert_int_eq(shm_ns_put(s, "ns1", hash), 0);
	ck_assert_int_eq(shm_ns_put(s, "ns2", hash), 0);
	return s;
}

struct seen {
	int n;
	int64_t pos[1024];
	char stream[1024][64];
	char ns[1024][16];
};

static void
collect(const struct ring_rec *r, void *arg)
{
	struct seen *v = arg;

	ck_assert_int_lt(v->n, 1024);
	v->pos[v->n] = r->position;
	snprintf(v->stream[v->n], sizeof(v->stream[0]), "%.*s", (int)r->stream_len, r->stream);
	snprintf(v->ns[v->n], sizeof(v->ns[0]), "%.*s", (int)r->ns_len, r->ns);
	v->n++;
}

START_TEST(test_siphash_vector)
{
	/* SipHash-2-4 reference: key 00..0f, message 00..0e */
	uint8_t key[16], msg[15];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	ck_assert_uint_eq(ring_siphash(key, msg, 15), 0xa129ca6149be45e5ULL);
	ck_assert_uint_eq(ring_siphash(key, msg, 0), 0x726fdb47dd0e0e31ULL);
}
END_TEST

START_TEST(test_append_and_read_across_the_wrap)
{
	struct shm *s = region();
	static struct seen v;
	struct ring_cursor cur;
	uint64_t gen = ring_ns_generation(s, "ns1", NULL);
	char name[64];

	memset(&v, 0, sizeof(v));
	ring_interest(s, 0, true, &cur);
	/* ~100 entries of ~60 bytes: several laps of a 4 KiB ring, read as we go */
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "acct-%d", i);
		ck_assert_int_eq(ring_append(s, i % 2 ? "ns1" : "ns2", gen, name, strlen(name), i, 1000 + i), 0);
		if (i % 7 == 6)
			ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_OK);
	}
	ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_OK);
	ck_assert_int_eq(v.n, 100);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "acct-%d", i);
		ck_assert_int_eq(v.pos[i], i);
		ck_assert_str_eq(v.stream[i], name);
		ck_assert_str_eq(v.ns[i], i % 2 ? "ns1" : "ns2");
	}
	/* a name longer than an entry may carry asks everyone to resync instead */
	{
		char longname[RING_STREAM_MAX + 2];
		memset(longname, 'x', sizeof(longname));
		ck_assert_int_eq(ring_append(s, "ns1", gen, longname, sizeof(longname), 0, 1), -1);
		ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_RESYNC);
	}
	shm_destroy(s);
}
END_TEST

START_TEST(test_overrun_and_resync)
{
	struct shm *s = region();
	static struct seen v;
	struct ring_cursor cur;

	memset(&v, 0, sizeof(v));
	ring_interest(s, 1, true, &cur);
	for (int i = 0; i < 200; i++)
		ring_append(s, "ns1", 0, "stream-1", 8, i, i + 1);
	ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_OVERRUN);
	ck_assert_int_eq(v.n, 0);
	/* the cursor is at the head: later entries read normally */
	ring_append(s, "ns1", 0, "stream-1", 8, 200, 201);
	ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_OK);
	ck_assert_int_eq(v.n, 1);
	ck_assert_int_eq(v.pos[0], 200);
	ring_request_resync(s);
	ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_RESYNC);
	ck_assert_int_eq(ring_read(s, &cur, collect, &v), RING_OK);
	shm_destroy(s);
}
END_TEST

START_TEST(test_wakeups)
{
	struct shm *s = region();
	struct ring_cursor c0, c1;
	uint64_t v;

	ring_interest(s, 0, true, &c0);
	ring_interest(s, 1, false, &c1);
	ring_signal(s, UINT32_MAX);
	ck_assert_int_eq(read(ring_eventfd(s, 0), &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_int_eq(read(ring_eventfd(s, 1), &v, sizeof(v)), -1); /* not interested: not woken */
	/* one eventfd write per batch until the worker acknowledges */
	ring_signal(s, UINT32_MAX);
	ring_signal(s, UINT32_MAX);
	ck_assert_int_eq(read(ring_eventfd(s, 0), &v, sizeof(v)), -1);
	ring_ack(s, 0);
	ring_signal(s, 1);
	ck_assert_int_eq(read(ring_eventfd(s, 0), &v, sizeof(v)), (ssize_t)sizeof(v));
	ck_assert_uint_eq(v, 1);
	ring_ack(s, 0);
	ring_signal(s, 0); /* self is skipped */
	ck_assert_int_eq(read(ring_eventfd(s, 0), &v, sizeof(v)), -1);
	shm_destroy(s);
}
END_TEST

START_TEST(test_stream_index)
{
	struct shm *s = region();
	uint64_t g1 = ring_ns_generation(s, "ns1", NULL), g2 = ring_ns_generation(s, "ns2", NULL);
	int64_t actual = -9;

	ck_assert_uint_ne(g1, 0);
	ck_assert_uint_ne(g1, g2);
	ck_assert(!ring_index_conflict(s, g1, "acct-1", 6, -1, &actual));
	ring_index_note(s, g1, "acct-1", 6, 5, 50);
	ck_assert(ring_index_conflict(s, g1, "acct-1", 6, -1, &actual));
	ck_assert_int_eq(actual, 5);
	ck_assert(ring_index_conflict(s, g1, "acct-1", 6, 4, &actual));
	ck_assert(!ring_index_conflict(s, g1, "acct-1", 6, 5, &actual)); /* maybe right: ask the database */
	ck_assert(!ring_index_conflict(s, g1, "acct-1", 6, 9, &actual));
	ck_assert(!ring_index_conflict(s, g2, "acct-1", 6, -1, &actual)); /* another namespace */
	ck_assert(!ring_index_conflict(s, g1, "acct-2", 6, -1, &actual));
	ring_index_note(s, g1, "acct-1", 6, 3, 30); /* a late note never lowers a version */
	ck_assert(ring_index_conflict(s, g1, "acct-1", 6, 4, &actual));
	ck_assert_int_eq(actual, 5);
	/* a re-created namespace has a new generation: old entries never match */
	ck_assert(shm_ns_remove(s, "ns1"));
	ck_assert_uint_eq(ring_ns_generation(s, "ns1", NULL), 0);
	{
		uint8_t hash[32] = {2};
		ck_assert_int_eq(shm_ns_put(s, "ns1", hash), 0);
	}
	ck_assert(!ring_index_conflict(s, ring_ns_generation(s, "ns1", NULL), "acct-1", 6, -1, &actual));
	/* many streams: entries get replaced, never confused */
	for (int i = 0; i < 200000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s-%d", i);
		ring_index_note(s, g2, name, strlen(name), i, i);
	}
	for (int i = 199000; i < 200000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s-%d", i);
		if (ring_index_conflict(s, g2, name, strlen(name), -1, &actual))
			ck_assert_int_eq(actual, i);
	}
	ring_index_clear(s);
	ck_assert(!ring_index_conflict(s, g2, "s-199999", 8, -1, &actual));
	shm_destroy(s);
}
END_TEST

START_TEST(test_subscription_counts)
{
	struct shm *s = region();
	uint32_t slot;
	uint64_t gen = ring_ns_generation(s, "ns1", &slot);

	ck_assert_int_eq(ring_subs_take(s, 0, slot, gen, 3), 0);
	ck_assert_int_eq(ring_subs_take(s, 1, slot, gen, 3), 0);
	ck_assert_int_eq(ring_subs_take(s, 1, slot, gen, 3), 0);
	ck_assert_int_eq(ring_subs_take(s, 0, slot, gen, 3), -1); /* over all workers */
	ring_subs_give(s, 1, slot, gen);
	ck_assert_int_eq(ring_subs_take(s, 0, slot, gen, 3), 0);
	ck_assert_int_eq(ring_subs_take(s, 0, slot, gen + 1000, 3), 0); /* a new generation starts at 0 */
	ring_worker_reset(s, 1); /* a respawned worker's subscriptions are gone */
	ck_assert_int_eq(ring_subs_take(s, 1, slot, gen + 1000, 2), 0);
	ck_assert_int_eq(ring_subs_take(s, 1, slot, gen + 1000, 2), -1);
	ck_assert_int_eq(ring_ns_last_gpos(s, slot, gen), 0);
	ring_append(s, "ns1", gen, "a-1", 3, 0, 77);
	ring_append(s, "ns1", gen, "a-2", 3, 0, 70);
	ck_assert_int_eq(ring_ns_last_gpos(s, slot, gen), 77);
	shm_destroy(s);
}
END_TEST

static Suite *
ring_suite(void)
{
	Suite *s = suite_create("ring");
	TCase *tc = tcase_create("ring");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_siphash_vector);
	tcase_add_test(tc, test_append_and_read_across_the_wrap);
	tcase_add_test(tc, test_overrun_and_resync);
	tcase_add_test(tc, test_wakeups);
	tcase_add_test(tc, test_stream_index);
	tcase_add_test(tc, test_subscription_counts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ring_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
