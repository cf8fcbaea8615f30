/* Unit tests for the backup commands' pieces: Go-compatible JSON output,
 * URLs and flags, big integer literals. */
#include "autoconf.h"

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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
