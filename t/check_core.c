/* Unit tests for the daemon's pure pieces: JSON writer, option parsing,
 * pools, number conversion, namespace ids and the shared namespace table. */
#include "autoconf.h"

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "jsonw.h"
#include "log.h"
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

/* jsonb's text form in, the compact form out; strings untouched. */
START_TEST(test_jw_compact)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"{\"a\": 1, \"b\": [1, 2, {\"c\": null}], \"d\": {}}", "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{}}"},
	    {" \t\r\n[ true ,false ]\n", "[true,false]"},
	    {"{\"k y\": \"a , b : c\"}", "{\"k y\":\"a , b : c\"}"},
	    /* an escaped quote does not end the string; an escaped backslash
	     * before a real quote does not escape it */
	    {"{\"q\": \"say \\\"hi , \\\" x\", \"b\": \"c:\\\\\", \"e\": 1}",
	     "{\"q\":\"say \\\"hi , \\\" x\",\"b\":\"c:\\\\\",\"e\":1}"},
	    {"{\"u\": \"\xe4\xb8\x96 \\u2028 \xf0\x9f\x8c\x8d\"}", "{\"u\":\"\xe4\xb8\x96 \\u2028 \xf0\x9f\x8c\x8d\"}"},
	    {"[1.50, -0, 1e+21, 123456789012345678901234567890]", "[1.50,-0,1e+21,123456789012345678901234567890]"},
	    {"\"\\\\\\\\  \\\"  \"", "\"\\\\\\\\  \\\"  \""},
	    {"{\"a\":1}", "{\"a\":1}"},
	    {"", ""},
	};
	struct evbuffer *b = evbuffer_new();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char copy[256], *s;
		size_t n;

		jw_compact(b, cases[i].in, strlen(cases[i].in));
		s = drain_str(b);
		ck_assert_msg(strcmp(s, cases[i].out) == 0, "case %zu: got %s", i, s);
		free(s);
		/* in place */
		snprintf(copy, sizeof(copy), "%s", cases[i].in);
		n = jw_compact_to(copy, strlen(copy), copy);
		copy[n] = '\0';
		ck_assert_str_eq(copy, cases[i].out);
	}
	/* a long string full of escapes copies every byte (and stays linear) */
	{
		size_t n = 200000, len;
		char *in = malloc(n * 2 + 8), *s;

		in[0] = '"';
		for (size_t i = 0; i < n; i++) {
			in[1 + 2 * i] = '\\';
			in[2 + 2 * i] = i % 2 ? '"' : 'n';
		}
		len = 1 + 2 * n;
		memcpy(in + len, "\" ,1", 4);
		len += 4;
		jw_compact(b, in, len);
		s = drain_str(b);
		ck_assert_uint_eq(strlen(s), len - 1);
		ck_assert(memcmp(s, in, len - 3) == 0);
		ck_assert_str_eq(s + len - 4, "\",1");
		free(s);
		free(in);
	}
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

/* A value outside an option's set is refused wherever it comes from; a
 * reload with a bad value anywhere changes nothing. */
START_TEST(test_config_choices_and_reload)
{
	struct config cfg;
	char err[256], path[] = "/tmp/eventodb-check-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	char *loud[] = {"--log-level", "loud"};
	char *upper[] = {"--log-level", "WARN", "--log-format=JSON"};
	char *withfile[] = {"--config", path};
	char *flagged[] = {"--config", path, "--log-level", "info"};

	ck_assert_int_eq(config_parse(&cfg, 2, loud, err, sizeof(err)), -1);
	ck_assert_str_eq(err,
	                 "--log-level: invalid value \"loud\" for log-level: must be one of debug, info, warn, error");
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 3, upper, err, sizeof(err)), 0);
	config_free(&cfg);
	setenv("EVENTODB_LOG_FORMAT", "xml", 1);
	ck_assert_int_eq(config_parse(&cfg, 0, NULL, err, sizeof(err)), -1);
	ck_assert_str_eq(err,
	                 "EVENTODB_LOG_FORMAT: invalid value \"xml\" for log-format: must be one of console, json");
	config_free(&cfg);
	unsetenv("EVENTODB_LOG_FORMAT");

	fprintf(f, "log-level = debug\n");
	fclose(f);
	ck_assert_int_eq(config_parse(&cfg, 2, withfile, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.log_level, "debug");
	f = fopen(path, "w");
	fprintf(f, "log-format = json\nlog-level = loud\n");
	fclose(f);
	ck_assert_int_eq(config_reload(&cfg, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":2: invalid value \"loud\" for log-level"));
	ck_assert_str_eq(cfg.log_format, "console"); /* line 1 was not applied either */
	ck_assert_str_eq(cfg.log_level, "debug");
	f = fopen(path, "w");
	fprintf(f, "log-format = json\nlog-level = warn\n");
	fclose(f);
	ck_assert_int_eq(config_reload(&cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.log_format, "json");
	ck_assert_str_eq(cfg.log_level, "warn");
	config_free(&cfg);
	/* a flag wins over the file, but a bad value in the file still fails,
	 * as it does at start-up */
	f = fopen(path, "w");
	fprintf(f, "log-level = debug\n");
	fclose(f);
	ck_assert_int_eq(config_parse(&cfg, 4, flagged, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.log_level, "info");
	f = fopen(path, "w");
	fprintf(f, "log-level = loud\n");
	fclose(f);
	ck_assert_int_eq(config_reload(&cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(cfg.log_level, "info");
	config_free(&cfg);
	ck_assert_int_eq(config_parse(&cfg, 4, flagged, err, sizeof(err)), -1);
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
	/* fill past the limit: the table stops at it */
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "ns%d", i);
		shm_ns_put(s, id, h2);
	}
	ck_assert_uint_eq(shm_header(s)->ns_count, 16);
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

/* The table's hash (FNV-1a), to pick ids that collide; the test checks the
 * slots it expects, so a changed hash fails loudly instead of testing less. */
static uint32_t
fnv1a(const char *id)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* The next id "<prefix><n>" whose home slot is home (mask: slots - 1). */
static void
colliding_id(const char *prefix, uint32_t home, uint32_t mask, int *n, char *out, size_t cap)
{
	do
		snprintf(out, cap, "%s%d", prefix, (*n)++);
	while ((fnv1a(out) & mask) != home);
}

static bool
ring_gen(struct shm *s, const char *id, uint64_t *gen)
{
	uint32_t slot;

	return shm_ns_lookup(s, id, &slot, gen);
}

static uint32_t
slot_of(struct shm *s, const char *id)
{
	uint32_t slot = UINT32_MAX;
	uint64_t gen;

	return shm_ns_lookup(s, id, &slot, &gen) ? slot : UINT32_MAX;
}

START_TEST(test_shm_ns_tombstones_limit_and_reservations)
{
	struct shm *s = shm_create(1, 4); /* 4 namespaces, 16 slots */
	struct shm_header *hd;
	struct shm_ns *t;
	uint8_t hash[32] = {7}, out[32];
	char a[16], b[16], c[16], d[16];
	uint64_t gb, gd, ticket, t2, t3;
	uint32_t mask, home;
	int n = 0;

	ck_assert_ptr_nonnull(s);
	hd = shm_header(s);
	t = shm_at(s, hd->ns_offset);
	ck_assert_uint_eq(hd->ns_limit, 4);
	ck_assert_uint_eq(hd->ns_capacity, 16);
	ck_assert_uint_eq(shm_ns_table_slots(4), 16);
	ck_assert_ptr_null(shm_create(1, 0));
	ck_assert_ptr_null(shm_create(1, SHM_NS_LIMIT_MAX + 1));
	mask = hd->ns_capacity - 1;
	home = fnv1a("x") & mask;
	colliding_id("a", home, mask, &n, a, sizeof(a));
	colliding_id("b", home, mask, &n, b, sizeof(b));
	colliding_id("c", home, mask, &n, c, sizeof(c));
	colliding_id("d", home, mask, &n, d, sizeof(d));
	/* three ids with one home slot sit in a row */
	ck_assert_int_eq(shm_ns_put(s, a, hash), 0);
	ck_assert_int_eq(shm_ns_put(s, b, hash), 0);
	ck_assert_int_eq(shm_ns_put(s, c, hash), 0);
	ck_assert_uint_eq(slot_of(s, a), home);
	ck_assert_uint_eq(slot_of(s, b), (home + 1) & mask);
	ck_assert_uint_eq(slot_of(s, c), (home + 2) & mask);
	ck_assert_uint_eq(hd->ns_count, 3);
	ck_assert(ring_gen(s, b, &gb));
	/* deleting the middle one leaves a tombstone: c is still found past it */
	ck_assert(shm_ns_remove(s, b));
	ck_assert_uint_eq(t[(home + 1) & mask].state, SHM_NS_DELETED);
	ck_assert(!shm_ns_get(s, b, out));
	ck_assert(shm_ns_get(s, c, out));
	ck_assert_uint_eq(hd->ns_count, 2);
	/* a new id with that home reuses the tombstone, with a new generation,
	 * and c stays reachable past the reused slot */
	ck_assert_int_eq(shm_ns_put(s, d, hash), 0);
	ck_assert_uint_eq(slot_of(s, d), (home + 1) & mask);
	ck_assert(ring_gen(s, d, &gd));
	ck_assert_uint_gt(gd, gb);
	ck_assert(shm_ns_get(s, c, out));
	ck_assert_uint_eq(slot_of(s, c), (home + 2) & mask);
	/* the limit counts namespaces, not slots */
	ck_assert_int_eq(shm_ns_put(s, "e", hash), 0);
	ck_assert_uint_eq(hd->ns_count, 4);
	ck_assert_int_eq(shm_ns_put(s, "f", hash), -1);
	ck_assert(!shm_ns_get(s, "f", out));
	ck_assert_int_eq(shm_ns_reserve(s, "f", &ticket), SHM_NS_RESERVE_FULL);
	ck_assert_int_eq(shm_ns_put(s, c, hash), 0); /* a change of hash still fits */
	/* a removal before an empty slot empties it, and the tombstones before it */
	ck_assert(shm_ns_remove(s, c));
	if (t[(home + 3) & mask].state == SHM_NS_EMPTY)
		ck_assert_uint_eq(t[(home + 2) & mask].state, SHM_NS_EMPTY);
	ck_assert(shm_ns_remove(s, d));
	ck_assert_uint_eq(t[(home + 1) & mask].state, t[(home + 2) & mask].state == SHM_NS_EMPTY ? SHM_NS_EMPTY : SHM_NS_DELETED);
	ck_assert(shm_ns_get(s, a, out));
	ck_assert(shm_ns_remove(s, "e"));
	ck_assert_uint_eq(hd->ns_count, 1);
	/* reservations hold a place but do not authenticate */
	ck_assert_int_eq(shm_ns_reserve(s, a, &ticket), SHM_NS_RESERVE_PRESENT);
	ck_assert_uint_eq(ticket, 0);
	ck_assert_int_eq(shm_ns_reserve(s, "r1", &ticket), SHM_NS_RESERVE_OK);
	ck_assert_uint_ne(ticket, 0);
	ck_assert(!shm_ns_get(s, "r1", out));
	ck_assert_uint_eq(slot_of(s, "r1"), UINT32_MAX);
	ck_assert(!shm_ns_remove(s, "r1"));
	ck_assert_int_eq(shm_ns_reserve(s, "r1", &t2), SHM_NS_RESERVE_PRESENT);
	ck_assert_int_eq(shm_ns_reserve(s, "r2", &t2), SHM_NS_RESERVE_OK);
	ck_assert_int_eq(shm_ns_reserve(s, "r3", &t3), SHM_NS_RESERVE_OK);
	ck_assert_uint_eq(hd->ns_count, 4);
	ck_assert_int_eq(shm_ns_reserve(s, "r4", &t2), SHM_NS_RESERVE_FULL);
	ck_assert_uint_eq(t2, 0);
	ck_assert_int_eq(shm_ns_put(s, "r4", hash), -1);
	shm_ns_release(s, "r3", t3 + 1); /* not that reservation */
	ck_assert_uint_eq(hd->ns_count, 4);
	shm_ns_release(s, "r3", t3);
	ck_assert_uint_eq(hd->ns_count, 3);
	/* the reservation becomes the namespace; an old ticket then changes nothing */
	ck_assert_int_eq(shm_ns_put(s, "r1", hash), 0);
	ck_assert(shm_ns_get(s, "r1", out));
	shm_ns_release(s, "r1", ticket);
	ck_assert(shm_ns_get(s, "r1", out));
	ck_assert_uint_eq(hd->ns_count, 3);
	/* a dead process's reservations are given back (r2 is ours) */
	shm_release_dead(s, getpid());
	ck_assert_uint_eq(hd->ns_count, 2);
	ck_assert_int_eq(shm_ns_reserve(s, "r2", &t2), SHM_NS_RESERVE_OK);
	ck_assert(shm_ns_get(s, "r1", out));
	shm_destroy(s);
}
END_TEST

START_TEST(test_shm_ns_churn)
{
	/* create and delete many times in a small table: every live entry is
	 * found, every deleted one is not, the count stays right */
	struct shm *s = shm_create(1, 8);
	uint8_t hash[32] = {1}, out[32];
	char live[8][16];
	int next = 0;

	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 8; i++) {
		snprintf(live[i], sizeof(live[i]), "n%d", next++);
		ck_assert_int_eq(shm_ns_put(s, live[i], hash), 0);
	}
	for (int round = 0; round < 5000; round++) {
		int k = (round * 7) % 8;
		char old[16];
		snprintf(old, sizeof(old), "%s", live[k]);
		ck_assert(shm_ns_remove(s, old));
		snprintf(live[k], sizeof(live[k]), "n%d", next++);
		ck_assert_int_eq(shm_ns_put(s, live[k], hash), 0);
		ck_assert_int_eq(shm_ns_put(s, "extra", hash), -1);
		ck_assert(!shm_ns_get(s, old, out));
		for (int i = 0; i < 8; i++)
			ck_assert(shm_ns_get(s, live[i], out));
		ck_assert_uint_eq(shm_header(s)->ns_count, 8);
	}
	shm_destroy(s);
}
END_TEST

/* The lines log_msg writes to a file, for format (console or json). */
static char *
log_lines(const char *format, const char *msg)
{
	char path[] = "/tmp/check_core_log_XXXXXX", err[256], *buf;
	int fd = mkstemp(path);
	FILE *f;
	long n;

	ck_assert_int_ge(fd, 0);
	close(fd);
	log_setup("info", format);
	ck_assert_int_eq(log_open(path, 0, err, sizeof(err)), 0);
	log_msg(LVL_INFO, "%s", msg);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	buf = calloc(1, 65536);
	n = (long)fread(buf, 1, 65535, f);
	ck_assert_int_gt(n, 0);
	fclose(f);
	unlink(path);
	return buf;
}

/* Client text cannot forge a line: control characters are escaped in every
 * format; the time has a fixed width. */
START_TEST(test_log_escaping)
{
	const char *msg = "parsing time \"\n2026-01-01 [1] ERROR forged\r\t\x1b[31m\x7f\" \\ \xc3\xa9 \xff end";
	char *out = log_lines("console", msg), *nl = strchr(out, '\n');
	json_object *o, *m;

	/* 2026-01-02T03:04:05.678Z [pid] INFO message */
	ck_assert_ptr_nonnull(nl);
	ck_assert(nl[1] == '\0'); /* one line */
	ck_assert(out[4] == '-' && out[10] == 'T' && out[19] == '.' && out[23] == 'Z' && out[24] == ' ');
	ck_assert_str_eq(strstr(out, "] INFO "),
	                 "] INFO parsing time \"\\n2026-01-01 [1] ERROR forged\\r\\t\\x1b[31m\\x7f\" "
	                 "\\\\ \xc3\xa9 \\xff end\n");
	free(out);
	out = log_lines("json", msg);
	nl = strchr(out, '\n');
	ck_assert(nl != NULL && nl[1] == '\0');
	o = json_tokener_parse(out);
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "message", &m));
	ck_assert_str_eq(json_object_get_string(m),
	                 "parsing time \"\n2026-01-01 [1] ERROR forged\r\t\x1b[31m\x7f\" \\ \xc3\xa9 \xef\xbf\xbd end");
	ck_assert(json_object_object_get_ex(o, "time", &m));
	ck_assert_int_eq(json_object_get_string_len(m), 24);
	json_object_put(o);
	free(out);
}
END_TEST

/* A message longer than a line is cut, still one line, still JSON. */
START_TEST(test_log_long_message)
{
	char msg[5000];
	char *out;
	json_object *o;

	for (size_t i = 0; i + 2 < sizeof(msg); i += 2)
		memcpy(msg + i, "\xc3\xa9", 2);
	msg[sizeof(msg) - 2] = '\0';
	msg[100] = '\n';
	out = log_lines("json", msg);
	ck_assert(strlen(out) <= 4096);
	ck_assert(strchr(out, '\n') == out + strlen(out) - 1);
	o = json_tokener_parse(out);
	ck_assert_ptr_nonnull(o);
	json_object_put(o);
	free(out);
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
	tcase_add_test(tc, test_jw_compact);
	tcase_add_test(tc, test_jw_ints_and_time);
	suite_add_tcase(s, tc);
	tc = tcase_create("config");
	tcase_add_test(tc, test_config_forms);
	tcase_add_test(tc, test_config_precedence_and_errors);
	tcase_add_test(tc, test_config_file);
	tcase_add_test(tc, test_config_choices_and_reload);
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
	tcase_add_test(tc, test_shm_ns_tombstones_limit_and_reservations);
	tcase_add_test(tc, test_shm_ns_churn);
	suite_add_tcase(s, tc);
	tc = tcase_create("log");
	tcase_add_test(tc, test_log_escaping);
	tcase_add_test(tc, test_log_long_message);
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
