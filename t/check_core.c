/* Unit tests for the daemon's pure pieces: JSON writer, option parsing,
 * pools, number conversion, namespace ids and the shared namespace table. */
#include "autoconf.h"

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "jsonw.h"
#include "pool.h"
#include "rpc.h"
#include "shm.h"
#include "stats.h"
#include "store_pg_int.h"

static char *
drain_str(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_jw_escaping)
{
	struct evbuffer *b = evbuffer_new();
	char *s;
	const char in[] = "a\"b\\c\n<x>&\x01 \xe2\x80\xa8\xe2\x80\xa9 \xe4\xb8\x96";

	jw_str(b, in, sizeof(in) - 1);
	s = drain_str(b);
	ck_assert_str_eq(s, "\"a\\\"b\\\\c\\n\\u003cx\\u003e\\u0026\\u0001 \\u2028\\u2029 \xe4\xb8\x96\"");
	free(s);
	jw_cstr(b, NULL);
	s = drain_str(b);
	ck_assert_str_eq(s, "null");
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_jw_escape_matches_str)
{
	struct evbuffer *b = evbuffer_new();
	const char in[] = "tab\there \xe2\x82\xac euro & amp";
	char out[sizeof(in) * 6 + 3], *s;

	jw_escape(in, sizeof(in) - 1, out);
	jw_str(b, in, sizeof(in) - 1);
	s = drain_str(b);
	ck_assert_str_eq(s, out);
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_jw_ints_and_time)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	jw_i64(b, 0);
	jw_lit(b, ",");
	jw_i64(b, -42);
	jw_lit(b, ",");
	jw_i64(b, INT64_MIN);
	jw_lit(b, ",");
	jw_i64(b, INT64_MAX);
	jw_lit(b, ",");
	jw_time_us(b, 1705314645123456LL);
	s = drain_str(b);
	ck_assert_str_eq(s, "0,-42,-9223372036854775808,9223372036854775807,\"2024-01-15T10:30:45.123456Z\"");
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_config_forms)
{
	struct config cfg;
	char err[256];
	char *argv[] = {"-port", "9001", "--workers=3", "--db-url", "postgres://x/y", "--test-mode", "--max-body=2MiB"};

	unsetenv("EVENTODB_PORT");
	ck_assert_int_eq(config_parse(&cfg, 7, argv, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.port, 9001);
	ck_assert_int_eq(cfg.workers, 3);
	ck_assert_str_eq(cfg.db_url, "postgres://x/y");
	ck_assert(cfg.test_mode);
	ck_assert_int_eq(cfg.max_body, 2 * 1024 * 1024);
	ck_assert_int_eq(cfg.db_pool_size, 4);
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_int_eq(cfg.write_batch_max, 64);
	ck_assert_int_eq(cfg.write_batch_bytes, 1024 * 1024);
	ck_assert_int_eq(cfg.db_idle_timeout, 60);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_precedence_and_errors)
{
	struct config cfg;
	char err[256];
	char *argv1[] = {"--port", "7000"};
	char *argv2[] = {"--nope"};
	char *argv3[] = {"--port", "abc"};
	char *argv4[] = {"--port"};
	char *argv5[] = {"--workers", "100000"};

	setenv("EVENTODB_PORT", "6000", 1);
	setenv("EVENTODB_LOG_LEVEL", "debug", 1);
	ck_assert_int_eq(config_parse(&cfg, 0, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.port, 6000);
	ck_assert_str_eq(cfg.log_level, "debug");
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 2, argv1, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.port, 7000); /* flag beats environment */
	config_free(&cfg);
	setenv("EVENTODB_PORT", "notanumber", 1); /* bad env number keeps the default */
	ck_assert_int_eq(config_parse(&cfg, 0, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.port, 8080);
	config_free(&cfg);
	unsetenv("EVENTODB_PORT");
	unsetenv("EVENTODB_LOG_LEVEL");
	ck_assert_int_eq(config_parse(&cfg, 1, argv2, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not defined"));
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 2, argv3, err, sizeof(err)), -1);
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 1, argv4, err, sizeof(err)), -1);
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 2, argv5, err, sizeof(err)), -1);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_file)
{
	struct config cfg;
	char err[256], path[] = "/tmp/eventodb-check-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	char *argv[] = {"--config", path, "--workers", "5"};

	fprintf(f, "# comment\nport = 7100\nworkers = 2\nlog_level = \"warn\"\n");
	fclose(f);
	ck_assert_int_eq(config_parse(&cfg, 4, argv, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.port, 7100);
	ck_assert_int_eq(cfg.workers, 5);
	ck_assert_str_eq(cfg.log_level, "warn");
	config_free(&cfg);
	f = fopen(path, "w");
	fprintf(f, "bogus = 1\n");
	fclose(f);
	ck_assert_int_eq(config_parse(&cfg, 2, argv, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "unknown option"));
	config_free(&cfg);
	unlink(path);
}
END_TEST

START_TEST(test_config_sizes)
{
	int64_t v;

	ck_assert_int_eq(config_parse_size("4096", &v), 0);
	ck_assert_int_eq(v, 4096);
	ck_assert_int_eq(config_parse_size("64k", &v), 0);
	ck_assert_int_eq(v, 65536);
	ck_assert_int_eq(config_parse_size("16MiB", &v), 0);
	ck_assert_int_eq(v, 16 << 20);
	ck_assert_int_eq(config_parse_size("1G", &v), 0);
	ck_assert_int_eq(v, 1 << 30);
	ck_assert_int_eq(config_parse_size("12q", &v), -1);
	ck_assert_int_eq(config_parse_size("-1", &v), -1);
	ck_assert_int_eq(config_parse_size("", &v), -1);
}
END_TEST

START_TEST(test_pool)
{
	struct pool p;
	int *a, *b, *c;

	pool_init(&p, "test", sizeof(int) * 4, 1, NULL);
	a = pool_get(&p);
	b = pool_get(&p);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(a[0], 0);
	a[0] = 7;
	ck_assert_int_eq(p.in_use, 2);
	ck_assert_int_eq(p.misses, 2);
	pool_put(&p, a);
	pool_put(&p, b); /* beyond max_free: freed */
	ck_assert_int_eq(p.nfree, 1);
	c = pool_get(&p);
	ck_assert_ptr_eq(c, a); /* reused, contents kept */
	ck_assert_int_eq(c[0], 7);
	ck_assert_int_eq(p.gets, 3);
	ck_assert_int_eq(p.misses, 2);
	ck_assert_int_eq(p.high_water, 2);
	pool_put(&p, c);
	pool_drain(&p);
	ck_assert_int_eq(p.nfree, 0);
}
END_TEST

START_TEST(test_json_to_int64)
{
	int64_t v;
	json_object *o;

	o = json_tokener_parse("1.9");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), 0);
	ck_assert_int_eq(v, 1);
	json_object_put(o);
	o = json_tokener_parse("-0.5");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), 0);
	ck_assert_int_eq(v, 0);
	json_object_put(o);
	o = json_tokener_parse("9223372036854775807");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), 0);
	ck_assert(v == INT64_MAX);
	json_object_put(o);
	o = json_tokener_parse("9223372036854775808");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), -2);
	json_object_put(o);
	o = json_tokener_parse("1e300");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), -2);
	json_object_put(o);
	o = json_tokener_parse("\"5\"");
	ck_assert_int_eq(rpc_json_to_int64(o, &v), -1);
	json_object_put(o);
	ck_assert_int_eq(rpc_json_to_int64(NULL, &v), -1);
}
END_TEST

START_TEST(test_ns_ids)
{
	ck_assert(auth_valid_ns_id("default", 7));
	ck_assert(auth_valid_ns_id("a", 1));
	ck_assert(auth_valid_ns_id("Tenant_1-x", 10));
	ck_assert(!auth_valid_ns_id("", 0));
	ck_assert(!auth_valid_ns_id("-a", 2));
	ck_assert(!auth_valid_ns_id("_a", 2));
	ck_assert(!auth_valid_ns_id("../etc", 6));
	ck_assert(!auth_valid_ns_id("a b", 3));
	ck_assert(!auth_valid_ns_id("a.b", 3));
	ck_assert(auth_valid_ns_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 54));
	ck_assert(!auth_valid_ns_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 55));
}
END_TEST

START_TEST(test_shm_ns_table)
{
	struct shm *s = shm_create(2, 16);
	uint8_t h1[32], h2[32], out[32];
	char id[16];

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(shm_header(s)->magic, SHM_MAGIC);
	memset(h1, 1, 32);
	memset(h2, 2, 32);
	ck_assert_int_eq(shm_ns_put(s, "default", h1), 0);
	ck_assert_int_eq(shm_ns_put(s, "other", h2), 0);
	ck_assert(shm_ns_get(s, "default", out));
	ck_assert_mem_eq(out, h1, 32);
	ck_assert(shm_ns_get(s, "other", out));
	ck_assert_mem_eq(out, h2, 32);
	ck_assert(!shm_ns_get(s, "missing", out));
	ck_assert(shm_ns_remove(s, "other"));
	ck_assert(!shm_ns_get(s, "other", out));
	ck_assert(!shm_ns_remove(s, "other"));
	/* fill to capacity: one slot always stays free */
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "ns%d", i);
		shm_ns_put(s, id, h2);
	}
	ck_assert_uint_lt(shm_header(s)->ns_count, shm_header(s)->ns_capacity);
	ck_assert(shm_ns_get(s, "default", out));
	shm_worker(s, 1)->st.http_requests = 5;
	shm_worker(s, 0)->st.http_requests = 2;
	{
		struct stats sum;
		shm_stats_sum(s, &sum);
		ck_assert_uint_eq(sum.http_requests, 7);
	}
	shm_destroy(s);
}
END_TEST

/* The store's set of categories being written, against a plain array of
 * counts: keys that share slots, growth, and deletion in any order (the
 * backward shift must keep every other key findable). */
START_TEST(test_pg_keyset)
{
	enum { NKEYS = 300 };
	struct pg_keyset ks;
	uint64_t keys[NKEYS];
	int count[NKEYS];
	unsigned seed = 12345;

	memset(&ks, 0, sizeof(ks));
	for (int i = 0; i < NKEYS; i++) {
		/* many share the low bits, so they share home slots */
		keys[i] = i < NKEYS / 2 ? ((uint64_t)(i + 1) << 40) : (uint64_t)(i + 1) * 0x9e3779b97f4a7c15u;
		count[i] = 0;
	}
	for (int step = 0; step < 20000; step++) {
		int i;

		seed = seed * 1103515245u + 12345u;
		i = (int)((seed >> 8) % NKEYS);
		if ((seed >> 4) % 3 != 0) {
			ck_assert(store_pg_keyset_add(&ks, keys[i]));
			count[i]++;
		} else {
			store_pg_keyset_del(&ks, keys[i]);
			if (count[i] > 0)
				count[i]--;
		}
		if (step % 997 == 0 || step == 19999)
			for (int k = 0; k < NKEYS; k++)
				ck_assert_msg(store_pg_keyset_has(&ks, keys[k]) == (count[k] > 0), "key %d at step %d", k, step);
	}
	for (int k = 0; k < NKEYS; k++)
		while (count[k]-- > 0)
			store_pg_keyset_del(&ks, keys[k]);
	ck_assert_uint_eq(ks.used, 0);
	for (int k = 0; k < NKEYS; k++)
		ck_assert(!store_pg_keyset_has(&ks, keys[k]));
	store_pg_keyset_free(&ks);
}
END_TEST

START_TEST(test_stats_write_batch)
{
	struct stats st;
	uint64_t sizes[] = {1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 1000};

	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		stats_write_batch(&st, sizes[i]);
	stats_write_batch(&st, 0);
	stats_write_batch(NULL, 3);
	ck_assert_uint_eq(st.write_batches, 14);
	ck_assert_uint_eq(st.write_batch_msgs, 1 + 2 + 3 + 4 + 5 + 8 + 9 + 16 + 17 + 32 + 33 + 64 + 65 + 1000);
	ck_assert_uint_eq(st.write_batch_1, 1);
	ck_assert_uint_eq(st.write_batch_2, 1);
	ck_assert_uint_eq(st.write_batch_le_4, 2);
	ck_assert_uint_eq(st.write_batch_le_8, 2);
	ck_assert_uint_eq(st.write_batch_le_16, 2);
	ck_assert_uint_eq(st.write_batch_le_32, 2);
	ck_assert_uint_eq(st.write_batch_le_64, 2);
	ck_assert_uint_eq(st.write_batch_gt_64, 2);
}
END_TEST

static Suite *
core_suite(void)
{
	Suite *s = suite_create("core");
	TCase *tc;

	tc = tcase_create("jsonw");
	tcase_add_test(tc, test_jw_escaping);
	tcase_add_test(tc, test_jw_escape_matches_str);
	tcase_add_test(tc, test_jw_ints_and_time);
	suite_add_tcase(s, tc);
	tc = tcase_create("config");
	tcase_add_test(tc, test_config_forms);
	tcase_add_test(tc, test_config_precedence_and_errors);
	tcase_add_test(tc, test_config_file);
	tcase_add_test(tc, test_config_sizes);
	suite_add_tcase(s, tc);
	tc = tcase_create("pool");
	tcase_add_test(tc, test_pool);
	suite_add_tcase(s, tc);
	tc = tcase_create("rpc");
	tcase_add_test(tc, test_json_to_int64);
	tcase_add_test(tc, test_ns_ids);
	suite_add_tcase(s, tc);
	tc = tcase_create("shm");
	tcase_add_test(tc, test_shm_ns_table);
	suite_add_tcase(s, tc);
	tc = tcase_create("batch");
	tcase_add_test(tc, test_pg_keyset);
	tcase_add_test(tc, test_stats_write_batch);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(core_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
