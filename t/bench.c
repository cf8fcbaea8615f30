/*
 * Micro-benchmarks of hot-path pieces (make bench). Each case prints one
 * line the way `go test -bench . -benchmem` does, fields separated by tabs:
 *
 *   BenchmarkStreamCategory	50000000	  21.3 ns/op	       0 B/op	       0 allocs/op
 *
 * Allocations are counted by the counting allocator linked into this
 * program (src/alloc_stats.c, the one --enable-alloc-stats puts into the
 * server): every malloc, calloc, realloc, aligned allocation and strdup in
 * the process, libraries included. B/op is bytes asked for per operation.
 *
 * Like Go, a case runs with n = 1 first, then with growing n until one run
 * lasts the bench time, and reports that run. Environment: BENCHTIME=1s
 * (also 250ms, or 1000x for a fixed count), BENCH_SHORT=1 for CI (10 ms).
 * Arguments select cases whose name contains any of them.
 *
 * The RPC envelope parse and the SSE poke encoding are not here yet: those
 * functions are being rewritten with the new connection layer.
 */
#include "autoconf.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_stats.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "resp.h"
#include "pool.h"
#include "ring.h"
#include "rpc.h"
#include "shm.h"
#include "wbuf.h"
#include "worker.h"

typedef void (*bench_fn)(int64_t n);

struct bench {
	const char *name;
	bench_fn fn;
};

static volatile size_t sink; /* results go here so the loops are not optimized away */

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- fixtures ---------------------------------------------------------------- */

static struct wbuf out;      /* a response buffer: emptied after each op, as a reply empties it */
static struct worker wk;     /* just enough of a worker for the response pool */
static struct shm *region;   /* namespace table and write ring */
static struct pool obj_pool; /* objects the size of an SSE poke (src/sse.c) */
static uint64_t ring_gen;

/* A row as PostgreSQL hands it over: jsonb text form (spaces after ':' and
 * ','), microsecond time. */
static const struct store_msg pg_row = {
    .id = "0195d3f0-7a4c-7c2e-9b1a-3f5e2d4c6b8a",
    .stream = "account-1234",
    .stream_len = 12,
    .type = "Deposited",
    .position = 41,
    .global_position = 981234,
    .data = "{\"amount\": 10, \"currency\": \"EUR\", \"note\": \"hello world\"}",
    .metadata = "{\"correlationStreamName\": \"workflow-77\", \"causationMessageId\": "
                "\"0195d3f0-7a4c-7c2e-9b1a-3f5e2d4c6b89\"}",
    .time_us = 1733000000123456,
};

/* The same row from the embedded store: compact JSON text, no metadata. */
static const struct store_msg sqlite_row = {
    .id = "0195d3f0-7a4c-7c2e-9b1a-3f5e2d4c6b8a",
    .stream = "account-1234",
    .stream_len = 12,
    .type = "Deposited",
    .position = 41,
    .global_position = 981234,
    .data = "{\"amount\":10,\"currency\":\"EUR\",\"note\":\"hello world\"}",
    .metadata = NULL,
    .time_us = 1733000000123456,
};

static const char stream_name[] = "account-1234+retry";
static char token[TOKEN_MAXLEN + 1];

static void
setup(void)
{
	uint8_t hash[32];

	pool_init(&wk.resp_pool, "resp", sizeof(struct resp), 1024, resp_free);
	pool_init(&obj_pool, "bench_obj", 104, 4096, NULL);
	region = shm_create_ex(2, 64, ring_index_size(), ring_part_size(2, 64, 4 << 20));
	if (region == NULL || ring_init(region, 4 << 20) != 0) {
		fprintf(stderr, "bench: cannot set up the fixtures\n");
		exit(1);
	}
	token_generate("default", token);
	digest_sha256(token, strlen(token), hash);
	if (shm_ns_put(region, "default", hash) != 0)
		exit(1);
	ring_gen = ring_ns_generation(region, "default", NULL);
}

/* ---- cases ----------------------------------------------------------------------- */

static void
page(int64_t n, const struct store_msg *row, int rows, bool with_stream)
{
	for (int64_t i = 0; i < n; i++) {
		jw_lit(&out, "[");
		for (int r = 0; r < rows; r++) {
			if (r > 0)
				jw_lit(&out, ",");
			rpc_write_message(&out, row, with_stream);
		}
		jw_lit(&out, "]\n");
		sink += out.len;
		out.len = 0;
	}
}

static void
b_write_message_pg(int64_t n)
{
	page(n, &pg_row, 1, false);
}

static void
b_write_message_sqlite(int64_t n)
{
	page(n, &sqlite_row, 1, false);
}

static void
b_write_page100_pg(int64_t n)
{
	page(n, &pg_row, 100, true);
}

static void
b_write_page100_sqlite(int64_t n)
{
	page(n, &sqlite_row, 100, true);
}

static void
b_stream_category(int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		sink += sn_category_len(stream_name, sizeof(stream_name) - 1);
}

static void
b_stream_id(int64_t n)
{
	const char *id;
	size_t len;

	for (int64_t i = 0; i < n; i++)
		if (sn_id(stream_name, sizeof(stream_name) - 1, &id, &len))
			sink += len;
}

static void
b_stream_cardinal_id(int64_t n)
{
	const char *id;
	size_t len;

	for (int64_t i = 0; i < n; i++)
		if (sn_cardinal_id(stream_name, sizeof(stream_name) - 1, &id, &len))
			sink += len;
}

static void
b_resp_round_trip(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		struct resp *r = resp_get(&wk);
		sink += (size_t)r;
		resp_put(&wk, r);
	}
}

static void
b_resp_small_reply(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		struct resp *r = resp_get(&wk);
		jw_lit(&r->buf, "{\"globalPosition\":981234,\"position\":41}\n");
		resp_put(&wk, r);
	}
}

/* What a coalesced poke costs in objects: one get and one put of a pool of
 * 104-byte objects (sizeof(struct sse_poke) on x86-64). */
static void
b_pool_round_trip(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		void *o = pool_get(&obj_pool);
		sink += (size_t)o;
		pool_put(&obj_pool, o);
	}
}

static void
b_ring_append(int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		ring_append(region, "default", ring_gen, "account-1234", 12, i, 1000 + i);
}

static void
count_rec(const struct ring_rec *r, void *arg)
{
	sink += (size_t)r->position;
}

static void
b_ring_append_read(int64_t n)
{
	struct ring_cursor cur;

	ring_interest(region, 0, true, &cur);
	for (int64_t i = 0; i < n; i++) {
		ring_append(region, "default", ring_gen, "account-1234", 12, i, 1000 + i);
		ring_read(region, &cur, count_rec, NULL);
	}
	ring_interest(region, 0, false, &cur);
}

static void
b_token_parse(int64_t n)
{
	char ns[TOKEN_NS_MAX + 1], err[160];
	size_t len = strlen(token);

	for (int64_t i = 0; i < n; i++)
		if (token_parse(token, len, ns, sizeof(ns), err, sizeof(err)) == 0)
			sink += (size_t)ns[0];
}

static void
b_token_lookup(int64_t n)
{
	uint8_t hash[32];

	for (int64_t i = 0; i < n; i++)
		if (shm_ns_get(region, "default", hash))
			sink += hash[0];
}

/* What auth_check does with a token: parse, hash, look up, compare. */
static void
b_token_auth(int64_t n)
{
	char ns[TOKEN_NS_MAX + 1], err[160];
	uint8_t want[32], got[32];
	size_t len = strlen(token);

	for (int64_t i = 0; i < n; i++) {
		if (token_parse(token, len, ns, sizeof(ns), err, sizeof(err)) != 0)
			abort();
		digest_sha256(token, len, got);
		if (!shm_ns_get(region, ns, want) || !digest_equal(want, got, sizeof(want)))
			abort();
	}
}

static const char plain[] = "account-1234 deposited 10 EUR for the order of 2024-12-01";
static const char escapy[] = "say \"hi\"\n<script>&\t\xe2\x80\xa8 back\\slash";

static void
b_jw_escape_plain(int64_t n)
{
	char buf[sizeof(plain) * 6 + 3];

	for (int64_t i = 0; i < n; i++)
		sink += jw_escape(plain, sizeof(plain) - 1, buf);
}

static void
b_jw_escape_escapes(int64_t n)
{
	char buf[sizeof(escapy) * 6 + 3];

	for (int64_t i = 0; i < n; i++)
		sink += jw_escape(escapy, sizeof(escapy) - 1, buf);
}

static void
b_jw_str_plain(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		jw_str(&out, plain, sizeof(plain) - 1);
		out.len = 0;
	}
}

static void
b_jw_str_escapes(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		jw_str(&out, escapy, sizeof(escapy) - 1);
		out.len = 0;
	}
}

/* A library's allocations are counted too: an evbuffer frees its chain when
 * drained, so every fill allocates one inside libevent. */
static void
b_evbuffer_fill_drain(int64_t n)
{
	struct evbuffer *eb = evbuffer_new();

	for (int64_t i = 0; i < n; i++) {
		jw_str(eb, plain, sizeof(plain) - 1);
		evbuffer_drain(eb, evbuffer_get_length(eb));
	}
	evbuffer_free(eb);
}

/* What counting costs a malloc/free pair: through the counting allocator,
 * and straight to glibc (the names it forwards to), in the same run. */
extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
static void *volatile keep;

static void
b_malloc_counted(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		keep = malloc(64);
		free(keep);
	}
}

static void
b_malloc_libc(int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		keep = __libc_malloc(64);
		__libc_free(keep);
	}
}

static const struct bench benches[] = {
    {"BenchmarkWriteMessage/pg", b_write_message_pg},
    {"BenchmarkWriteMessage/sqlite", b_write_message_sqlite},
    {"BenchmarkWritePage100/pg", b_write_page100_pg},
    {"BenchmarkWritePage100/sqlite", b_write_page100_sqlite},
    {"BenchmarkStreamCategory", b_stream_category},
    {"BenchmarkStreamID", b_stream_id},
    {"BenchmarkStreamCardinalID", b_stream_cardinal_id},
    {"BenchmarkRespRoundTrip", b_resp_round_trip},
    {"BenchmarkEvbufferFillDrain", b_evbuffer_fill_drain},
    {"BenchmarkRespSmallReply", b_resp_small_reply},
    {"BenchmarkPoolRoundTrip", b_pool_round_trip},
    {"BenchmarkRingAppend", b_ring_append},
    {"BenchmarkRingAppendRead", b_ring_append_read},
    {"BenchmarkTokenParse", b_token_parse},
    {"BenchmarkTokenLookup", b_token_lookup},
    {"BenchmarkTokenAuth", b_token_auth},
    {"BenchmarkJSONEscape/plain", b_jw_escape_plain},
    {"BenchmarkJSONEscape/escapes", b_jw_escape_escapes},
    {"BenchmarkJWStr/plain", b_jw_str_plain},
    {"BenchmarkJWStr/escapes", b_jw_str_escapes},
    {"BenchmarkMallocFree/counted", b_malloc_counted},
    {"BenchmarkMallocFree/libc", b_malloc_libc},
};

/* ---- the runner ------------------------------------------------------------------- */

struct result {
	int64_t n, ns;
	uint64_t allocs, bytes;
};

static void
run_once(bench_fn fn, int64_t n, struct result *r)
{
	struct alloc_totals a, b;
	int64_t t0, t1;

	alloc_stats_totals(alloc_stats_current(), &a);
	t0 = mono_ns();
	fn(n);
	t1 = mono_ns();
	alloc_stats_totals(alloc_stats_current(), &b);
	r->n = n;
	r->ns = t1 - t0;
	r->allocs = b.allocs - a.allocs;
	r->bytes = b.bytes - a.bytes;
}

/* Go's testing.B: grow n by the measured rate, at most 100x per round. */
static void
run(const struct bench *bc, int64_t target_ns, int64_t fixed_n)
{
	struct result r;
	int64_t n = 1;

	run_once(bc->fn, 1, &r);
	if (fixed_n > 0) {
		run_once(bc->fn, fixed_n, &r);
	} else {
		while (r.ns < target_ns && n < 1000000000) {
			int64_t per = r.ns > 0 ? r.ns / r.n : 0, next;
			next = per > 0 ? target_ns * 6 / 5 / per : n * 100;
			if (next > n * 100)
				next = n * 100;
			if (next <= n)
				next = n + 1;
			n = next;
			run_once(bc->fn, n, &r);
		}
	}
	printf("%s\t%lld\t%.1f ns/op\t%llu B/op\t%llu allocs/op\n", bc->name, (long long)r.n,
	       (double)r.ns / (double)r.n, (unsigned long long)(r.bytes / (uint64_t)r.n),
	       (unsigned long long)(r.allocs / (uint64_t)r.n));
	fflush(stdout);
}

static int
parse_benchtime(const char *s, int64_t *ns, int64_t *fixed)
{
	char *end;
	double v = strtod(s, &end);

	*fixed = 0;
	if (end == s || v <= 0)
		return -1;
	if (strcmp(end, "x") == 0)
		*fixed = (int64_t)v;
	else if (strcmp(end, "s") == 0)
		*ns = (int64_t)(v * 1e9);
	else if (strcmp(end, "ms") == 0)
		*ns = (int64_t)(v * 1e6);
	else
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *bt = getenv("BENCHTIME");
	int64_t target = 1000000000, fixed = 0;
	int matched = 0;

	if (getenv("BENCH_SHORT") != NULL && strcmp(getenv("BENCH_SHORT"), "1") == 0)
		target = 10000000;
	else if (bt != NULL && bt[0] != '\0' && parse_benchtime(bt, &target, &fixed) != 0) {
		fprintf(stderr, "bench: BENCHTIME=%s: expected e.g. 1s, 250ms or 1000x\n", bt);
		return 2;
	}
	if (!alloc_stats_linked()) {
		fprintf(stderr, "bench: the counting allocator is not linked in\n");
		return 2;
	}
	setup();
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
		bool want = argc < 2;
		for (int a = 1; a < argc && !want; a++)
			want = strstr(benches[i].name, argv[a]) != NULL;
		if (!want)
			continue;
		matched++;
		run(&benches[i], target, fixed);
	}
	if (matched == 0) {
		fprintf(stderr, "bench: no case matches\n");
		return 1;
	}
	return 0;
}
