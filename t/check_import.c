/* Unit tests for the bulk import pieces: the connection filter's HTTP framing
 * (what goes on to evhttp, what goes to the import) and the backup commands'
 * Go-compatible JSON output. */
#include "autoconf.h"

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "import.h"
#include "jsonnum.h"

static char *
take(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

/* Feeds text to the filter; returns what evhttp would get (malloc'd). */
static char *
feed(struct import_filter *f, struct evbuffer *src, const char *text)
{
	struct evbuffer *dst = evbuffer_new();
	char *s;

	evbuffer_add(src, text, strlen(text));
	import_filter_feed(f, src, dst);
	s = take(dst);
	evbuffer_free(dst);
	return s;
}

START_TEST(test_filter_passes_other_requests)
{
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new();
	const char *reqs = "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n[\"a\",\"b\"]"
	                   "GET /health HTTP/1.1\r\n\r\n"
	                   "POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	                   "POST /importer HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy";
	char *s = feed(f, src, reqs);

	/* a body that looks like a request head is still a body */
	ck_assert_str_eq(s, reqs);
	ck_assert_uint_eq(evbuffer_get_length(src), 0);
	ck_assert(!import_filter_diverting(f));
	free(s);
	/* a head in pieces */
	s = feed(f, src, "POST /rpc HTTP/1.1\r\nContent-Le");
	ck_assert_str_eq(s, "");
	free(s);
	s = feed(f, src, "ngth: 2\r\n\r\n{}");
	ck_assert_str_eq(s, "POST /rpc HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
	free(s);
	evbuffer_free(src);
	import_filter_free_detached(f);
}
END_TEST

START_TEST(test_filter_diverts_import_body)
{
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new();
	char *s, *body;

	s = feed(f, src,
	         "POST /import?force=true HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nExpect: 100-continue\r\n"
	         "Authorization: Bearer t\r\n\r\nline1\nline");
	ck_assert_str_eq(s, "POST /import?force=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
	                    "Content-Length: 0\r\n\r\n");
	free(s);
	ck_assert(import_filter_diverting(f));
	ck_assert(import_filter_expecting(f));
	/* nothing moves until the handler takes the body */
	ck_assert_uint_eq(evbuffer_get_length(src), 10);
	import_filter_accept(f);
	ck_assert(!import_filter_expecting(f));
	s = feed(f, src, "2\nGET /next HTTP/1.1\r\n\r\n");
	ck_assert_str_eq(s, "");
	free(s);
	body = take(import_filter_body(f));
	ck_assert_str_eq(body, "line1\nline2\n");
	free(body);
	ck_assert(import_filter_ended(f));
	/* the next request waits for the import to finish */
	ck_assert_uint_eq(evbuffer_get_length(src), strlen("GET /next HTTP/1.1\r\n\r\n"));
	import_filter_release(f);
	s = feed(f, src, "");
	ck_assert_str_eq(s, "GET /next HTTP/1.1\r\n\r\n");
	free(s);
	evbuffer_free(src);
	import_filter_free_detached(f);
}
END_TEST

START_TEST(test_filter_chunked_import)
{
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new();
	char *s, *body;

	s = feed(f, src, "PUT http://h:1/import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	ck_assert_str_eq(s, "PUT http://h:1/import HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	free(s);
	import_filter_accept(f);
	s = feed(f, src, "4\r\nab\nc\r\n");
	free(s);
	ck_assert(!import_filter_ended(f));
	s = feed(f, src, "1 \r\n\n\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
	free(s);
	body = take(import_filter_body(f));
	ck_assert_str_eq(body, "ab\nc\n");
	free(body);
	ck_assert(import_filter_ended(f));
	ck_assert(!import_filter_broken(f));
	import_filter_release(f);
	s = feed(f, src, "");
	ck_assert_str_eq(s, "GET / HTTP/1.1\r\n\r\n");
	free(s);
	evbuffer_free(src);
	import_filter_free_detached(f);
}
END_TEST

START_TEST(test_filter_discard_and_broken)
{
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new();
	char *s;

	/* an import the handler refused: its body is dropped */
	s = feed(f, src, "POST /import HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc");
	free(s);
	import_filter_release(f);
	s = feed(f, src, "defGET /x HTTP/1.1\r\n\r\n");
	ck_assert_str_eq(s, "GET /x HTTP/1.1\r\n\r\n");
	free(s);
	/* an import with no body at all */
	s = feed(f, src, "POST /import HTTP/1.1\r\n\r\n");
	ck_assert_str_eq(s, "POST /import HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	free(s);
	import_filter_accept(f);
	ck_assert(import_filter_ended(f));
	import_filter_release(f);
	/* broken chunk framing: the import hears of it, evhttp gets the rest */
	s = feed(f, src, "POST /import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	free(s);
	import_filter_accept(f);
	s = feed(f, src, "zz\r\nrest");
	ck_assert(import_filter_broken(f));
	ck_assert_str_eq(s, "zz\r\nrest");
	free(s);
	import_filter_release(f);
	evbuffer_free(src);
	import_filter_free_detached(f);

	/* a head evhttp would reject: the filter becomes a plain pipe */
	f = import_filter_new_detached();
	src = evbuffer_new();
	s = feed(f, src, "POST /import HTTP/1.1\r\nContent-Length: -5\r\n\r\nabc");
	ck_assert_str_eq(s, "POST /import HTTP/1.1\r\nContent-Length: -5\r\n\r\nabc");
	free(s);
	evbuffer_free(src);
	import_filter_free_detached(f);
}
END_TEST

START_TEST(test_filter_backpressure)
{
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new(), *dst = evbuffer_new();
	char head[128], *chunk = malloc(1024 * 1024);
	size_t total = 3 * IMPORT_FILTER_BUF;

	memset(chunk, 'x', 1024 * 1024);
	snprintf(head, sizeof(head), "POST /import HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", total);
	evbuffer_add(src, head, strlen(head));
	import_filter_feed(f, src, dst);
	evbuffer_drain(dst, evbuffer_get_length(dst));
	import_filter_accept(f);
	for (size_t i = 0; i < total / (1024 * 1024); i++)
		evbuffer_add(src, chunk, 1024 * 1024);
	import_filter_feed(f, src, dst);
	/* the import's buffer holds at most IMPORT_FILTER_BUF; the rest waits */
	ck_assert_uint_eq(evbuffer_get_length(import_filter_body(f)), IMPORT_FILTER_BUF);
	ck_assert_uint_eq(evbuffer_get_length(src), total - IMPORT_FILTER_BUF);
	evbuffer_drain(import_filter_body(f), IMPORT_FILTER_BUF);
	import_filter_feed(f, src, dst);
	ck_assert_uint_eq(evbuffer_get_length(import_filter_body(f)), IMPORT_FILTER_BUF);
	ck_assert_uint_eq(evbuffer_get_length(dst), 0);
	free(chunk);
	evbuffer_free(src);
	evbuffer_free(dst);
	import_filter_free_detached(f);
}
END_TEST

/* The same conversation fed one byte at a time: every split point of heads,
 * chunk-size lines, chunk data and trailers. */
START_TEST(test_filter_byte_by_byte)
{
	const char *in = "POST /rpc HTTP/1.1\r\nContent-Length: 5\r\n\r\n[1,2]"
	                 "POST /import HTTP/1.1\nTransfer-Encoding: chunked\nX-A: b\n\n"
	                 "3\r\nab\n\r\n10 \r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"
	                 "POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
	                 "POST /import HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyz"
	                 "GET /health HTTP/1.1\r\n\r\n";
	const char *want = "POST /rpc HTTP/1.1\r\nContent-Length: 5\r\n\r\n[1,2]"
	                   "POST /import HTTP/1.1\nX-A: b\nContent-Length: 0\r\n\r\n"
	                   "POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n"
	                   "POST /import HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
	                   "GET /health HTTP/1.1\r\n\r\n";
	struct import_filter *f = import_filter_new_detached();
	struct evbuffer *src = evbuffer_new(), *dst = evbuffer_new(), *bodies = evbuffer_new();
	bool taken = false;
	char *s;

	for (size_t i = 0; in[i] != '\0'; i++) {
		evbuffer_add(src, in + i, 1);
		import_filter_feed(f, src, dst);
		if (import_filter_diverting(f) && !taken) {
			import_filter_accept(f);
			taken = true;
			import_filter_feed(f, src, dst);
		}
		if (taken && import_filter_ended(f)) {
			evbuffer_add_buffer(bodies, import_filter_body(f));
			evbuffer_add(bodies, "|", 1);
			import_filter_release(f);
			taken = false;
			import_filter_feed(f, src, dst);
		}
	}
	s = take(dst);
	ck_assert_str_eq(s, want);
	free(s);
	s = take(bodies);
	ck_assert_str_eq(s, "ab\n0123456789abcdef|wxyz|");
	free(s);
	ck_assert_uint_eq(evbuffer_get_length(src), 0);
	evbuffer_free(src);
	evbuffer_free(dst);
	evbuffer_free(bodies);
	import_filter_free_detached(f);
}
END_TEST

START_TEST(test_go_float)
{
	static const struct {
		double v;
		const char *want;
	} cases[] = {
	    {1, "1"},
	    {-2.5, "-2.5"},
	    {0.1, "0.1"},
	    {5.5, "5.5"},
	    {1e20, "100000000000000000000"},
	    {1e21, "1e+21"},
	    {1.5e-7, "1.5e-7"},
	    {1e-6, "0.000001"},
	    {0.000123, "0.000123"},
	    {123456789.125, "123456789.125"},
	    {1.7976931348623157e308, "1.7976931348623157e+308"},
	    {5e-324, "5e-324"},
	    {1.2345e-10, "1.2345e-10"},
	    {100, "100"},
	    {0.3, "0.3"},
	};
	char out[40];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cli_go_float(cases[i].v, out, sizeof(out));
		ck_assert_str_eq(out, cases[i].want);
	}
}
END_TEST

START_TEST(test_json_go)
{
	struct evbuffer *b = evbuffer_new();
	json_object *o = json_tokener_parse("{\"b\": [1, 2.50, \"<&>\", null, true], \"a\": {\"z\": 1e2, \"y\": {}},"
	                                    " \"\\u00e9\": \"\\u2028\", \"c\": 18446744073709551615}");
	char *s;

	ck_assert_ptr_nonnull(o);
	cli_json_go(b, o);
	s = take(b);
	ck_assert_str_eq(s, "{\"a\":{\"y\":{},\"z\":100},\"b\":[1,2.5,\"\\u003c\\u0026\\u003e\",null,true],"
	                    "\"c\":18446744073709551615,\"\xc3\xa9\":\"\\u2028\"}");
	free(s);
	json_object_put(o);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_url_and_flags)
{
	struct cli_url u;
	char err[256];
	const char *url = NULL, *out = NULL;
	bool gz = false;
	const struct cli_flag flags[] = {
	    {"url", CLI_STR, "u", &url, NULL},
	    {"output", CLI_STR, "o", &out, NULL},
	    {"gzip", CLI_BOOL, "g", NULL, &gz},
	    {NULL, CLI_STR, NULL, NULL, NULL},
	};
	char *argv1[] = {"export", "-url", "http://x", "--output=f", "--gzip", NULL};
	char *argv2[] = {"export", "--nope", NULL};
	char *argv3[] = {"export", "-h", NULL};

	ck_assert_int_eq(cli_url_parse("http://127.0.0.1:8080", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.host, "127.0.0.1");
	ck_assert_str_eq(u.port, "8080");
	ck_assert_str_eq(u.base, "");
	ck_assert_int_eq(cli_url_parse("http://[::1]:9/base/", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_str_eq(u.port, "9");
	ck_assert_str_eq(u.hostport, "[::1]:9");
	ck_assert_str_eq(u.base, "/base");
	ck_assert_int_eq(cli_url_parse("http://example.org", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.port, "80");
	ck_assert_int_eq(cli_url_parse("https://example.org", &u, err, sizeof(err)), -1);
	ck_assert_int_eq(cli_url_parse("example.org:80", &u, err, sizeof(err)), -1);

	ck_assert_int_eq(cli_flags_parse(flags, 5, argv1, err, sizeof(err)), 0);
	ck_assert_str_eq(url, "http://x");
	ck_assert_str_eq(out, "f");
	ck_assert(gz);
	ck_assert_int_eq(cli_flags_parse(flags, 2, argv2, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "flag provided but not defined: -nope");
	ck_assert_int_eq(cli_flags_parse(flags, 2, argv3, err, sizeof(err)), 1);
}
END_TEST

START_TEST(test_jsonnum)
{
	const char *in = "{\"a\":2500000000000000000000,\"b\":\"12345678901234567890123\\\"4\",\"c\":"
	                 "-9223372036854775809,\"d\":18446744073709551615,\"e\":1e500,\"f\":[99999999999999999999]}";
	char out[256];

	ck_assert_uint_eq(jsonnum_bigints(in, strlen(in)), 3);
	ck_assert_uint_eq(jsonnum_widen(in, strlen(in), out), strlen(in) + 6);
	ck_assert_str_eq(out, "{\"a\":2500000000000000000000.0,\"b\":\"12345678901234567890123\\\"4\",\"c\":"
	                      "-9223372036854775809.0,\"d\":18446744073709551615,\"e\":1e500,"
	                      "\"f\":[99999999999999999999.0]}");
	ck_assert_uint_eq(jsonnum_bigints("[1,-2,\"x\"]", 10), 0);
	/* json-c takes leading zeros after a '-': they do not make a number big */
	ck_assert_uint_eq(jsonnum_bigints("[-000000000000000000000000423970471]", 36), 0);
	ck_assert_uint_eq(jsonnum_bigints("[-0000000000000000000009223372036854775809]", 43), 1);
	ck_assert_uint_eq(jsonnum_bigints("[-00000000000000000000009223372036854775808]", 44), 0);
}
END_TEST

static Suite *
import_suite(void)
{
	Suite *s = suite_create("import");
	TCase *tc;

	tc = tcase_create("filter");
	tcase_add_test(tc, test_filter_passes_other_requests);
	tcase_add_test(tc, test_filter_diverts_import_body);
	tcase_add_test(tc, test_filter_chunked_import);
	tcase_add_test(tc, test_filter_discard_and_broken);
	tcase_add_test(tc, test_filter_backpressure);
	tcase_add_test(tc, test_filter_byte_by_byte);
	suite_add_tcase(s, tc);
	tc = tcase_create("cli");
	tcase_add_test(tc, test_go_float);
	tcase_add_test(tc, test_json_go);
	tcase_add_test(tc, test_url_and_flags);
	tcase_add_test(tc, test_jsonnum);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(import_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
