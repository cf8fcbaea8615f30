/* Unit tests for the HTTP front end's pure pieces: the query-string parser,
 * the request parser wrapper (the same requests whether they arrive whole
 * or split at any byte), and the reusable byte buffer. */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "httpp.h"
#include "wbuf.h"

/* ---- query strings ---------------------------------------------------------- */

static const char *
param(const char *q, const char *name, int *rc)
{
	static char out[256];
	size_t len = 0;

	*rc = http_query_param(q, strlen(q), name, out, sizeof(out), &len);
	if (*rc == 1)
		ck_assert_uint_eq(len, strlen(out));
	return out;
}

START_TEST(test_query_param)
{
	int rc;

	ck_assert_str_eq(param("token=abc", "token", &rc), "abc");
	ck_assert_int_eq(rc, 1);
	ck_assert_str_eq(param("&token=abc", "token", &rc), "abc");
	ck_assert_str_eq(param("token=abc&&", "token", &rc), "abc");
	ck_assert_str_eq(param("a&token&b=&token=x", "token", &rc), "x"); /* valueless, empty: ignored */
	ck_assert_str_eq(param("token=&token=y", "token", &rc), "y");
	ck_assert_str_eq(param("s=a+b%20c%2B", "s", &rc), "a b c+");
	ck_assert_str_eq(param("st%72eam=x", "stream", &rc), "x"); /* keys are decoded too */
	ck_assert_str_eq(param("x=1&x=2", "x", &rc), "1");         /* the first one counts */
	param("tokens=1&atoken=2", "token", &rc);
	ck_assert_int_eq(rc, 0);
	param("", "token", &rc);
	ck_assert_int_eq(rc, 0);
	param("token=", "token", &rc);
	ck_assert_int_eq(rc, 0);
	{
		char big[400], out[16];
		size_t len;
		memset(big, 'v', sizeof(big));
		memcpy(big, "k=", 2);
		big[sizeof(big) - 1] = '\0';
		ck_assert_int_eq(http_query_param(big, strlen(big), "k", out, sizeof(out), &len), -1);
	}
}
END_TEST

START_TEST(test_query_valid)
{
	ck_assert(http_query_valid("a=1&b=%2F%2f", 12));
	ck_assert(http_query_valid("", 0));
	ck_assert(http_query_valid("a+b=c", 5));
	ck_assert(!http_query_valid("a=%zz", 5));
	ck_assert(!http_query_valid("a=%4", 4));
	ck_assert(!http_query_valid("a=%", 3));
	ck_assert(!http_query_valid("a=%00", 5));
	ck_assert(!http_query_valid("a=%G1", 5));
	ck_assert(!http_query_valid("a\0b", 3));
}
END_TEST

/* ---- the request parser -------------------------------------------------------- */

/* What a parse produced, as text: every message's target, headers, body
 * and end, so two parses compare with one string comparison. */
struct trace {
	struct httpp p;
	char out[16384];
	size_t len;
	int last; /* 0 none, 1 url, 2 field, 3 value, 4 body */
};

static void
emit(struct trace *t, int kind, const char *at, size_t n)
{
	static const char *const tag[] = {"", "U:", "F:", "V:", "B:"};

	if (t->last != kind) {
		t->len += (size_t)snprintf(t->out + t->len, sizeof(t->out) - t->len, "\n%s", tag[kind]);
		t->last = kind;
	}
	ck_assert_uint_lt(t->len + n, sizeof(t->out));
	memcpy(t->out + t->len, at, n);
	t->len += n;
	t->out[t->len] = '\0';
}

static int
t_url(void *o, const char *at, size_t n)
{
	emit(o, 1, at, n);
	return 0;
}

static int
t_field(void *o, const char *at, size_t n)
{
	emit(o, 2, at, n);
	return 0;
}

static int
t_value(void *o, const char *at, size_t n)
{
	emit(o, 3, at, n);
	return 0;
}

static int
t_body(void *o, const char *at, size_t n)
{
	emit(o, 4, at, n);
	return 0;
}

static int
t_chunk(void *o)
{
	(void)o;
	return 0;
}

static const struct httpp_hooks t_hooks = {t_url, t_field, t_value, t_body, t_chunk};

static void
mark(struct trace *t, const char *what)
{
	t->len += (size_t)snprintf(t->out + t->len, sizeof(t->out) - t->len, "\n[%s]", what);
	t->last = 0;
}

/* Feeds input in pieces of at most step bytes (0: whole); returns false on
 * a parse error. */
static bool
run(struct trace *t, const char *in, size_t n, size_t step)
{
	size_t off = 0;

	memset(t, 0, sizeof(*t));
	httpp_init(&t->p, &t_hooks, t);
	while (off < n) {
		size_t len = step == 0 || n - off < step ? n - off : step, used;
		enum httpp_event ev;

		used = httpp_feed(&t->p, in + off, len, &ev);
		off += used;
		switch (ev) {
		case HTTPP_MORE:
			ck_assert_uint_eq(used, len);
			break;
		case HTTPP_HEAD_DONE: {
			char buf[64];
			snprintf(buf, sizeof(buf), "head %s chunked=%d", httpp_method_name(&t->p), httpp_chunked(&t->p));
			mark(t, buf);
			httpp_resume(&t->p);
			break;
		}
		case HTTPP_MSG_DONE:
			mark(t, "end");
			httpp_resume(&t->p);
			break;
		default:
			mark(t, "error");
			return false;
		}
	}
	return true;
}

static const char *const requests[] = {
	"POST /rpc?token=x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
	"GET /health HTTP/1.1\r\nX-Empty:\r\nX-Multi: a  \r\n\r\n",
	"POST /import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	"5;ext=1;other\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
	"GET /after HTTP/1.0\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
};

START_TEST(test_split_anywhere_same_result)
{
	static struct trace whole, split;

	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		const char *in = requests[i];
		size_t n = strlen(in);

		ck_assert(run(&whole, in, n, 0));
		for (size_t step = 1; step <= n; step++) {
			ck_assert(run(&split, in, n, step));
			ck_assert_str_eq(split.out, whole.out);
		}
	}
	/* and what the whole parse found */
	ck_assert(run(&whole, requests[0], strlen(requests[0]), 0));
	ck_assert_ptr_nonnull(strstr(whole.out, "\nB:hello world\n[end]"));
	ck_assert_ptr_nonnull(strstr(whole.out, "\nF:X-Multi\nV:a  \n"));
	ck_assert(run(&whole, requests[1], strlen(requests[1]), 0));
	ck_assert_ptr_nonnull(strstr(whole.out, "[head POST chunked=1]\nB:hello world\nF:X-Trailer"));
	ck_assert_ptr_nonnull(strstr(whole.out, "\nU:/after\n"));
}
END_TEST

START_TEST(test_errors)
{
	static struct trace t;
	static const char *const bad[] = {
		"FOO /x HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /x HTTP/1.1\r\nX-C: a\001b\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert(!run(&t, bad[i], strlen(bad[i]), 0));
	ck_assert(!run(&t, bad[0], strlen(bad[0]), 0));
	ck_assert_int_eq(httpp_error(&t.p), HTTPP_E_METHOD);
}
END_TEST

START_TEST(test_split_target)
{
	size_t po, pl, qo, ql;
	const char *t1 = "/rpc?token=a&b", *t2 = "http://host:8080/sub?x=1", *t3 = "/plain";

	ck_assert_int_eq(httpp_split_target(t1, strlen(t1), &po, &pl, &qo, &ql), 0);
	ck_assert_int_eq((int)pl, 4);
	ck_assert_int_eq(strncmp(t1 + qo, "token=a&b", ql), 0);
	ck_assert_int_eq(httpp_split_target(t2, strlen(t2), &po, &pl, &qo, &ql), 0);
	ck_assert_int_eq(strncmp(t2 + po, "/sub", pl), 0);
	ck_assert_int_eq(httpp_split_target(t3, strlen(t3), &po, &pl, &qo, &ql), 0);
	ck_assert_uint_eq(ql, 0);
}
END_TEST

/* ---- the byte buffer ----------------------------------------------------------- */

START_TEST(test_wbuf)
{
	struct wbuf b = {0};
	char *kept;

	for (int i = 0; i < 1000; i++)
		wb_lit(&b, "0123456789");
	ck_assert_uint_eq(b.len, 10000);
	ck_assert(!b.failed);
	wb_consume(&b, 9995);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_int_eq(memcmp(b.p, "56789", 5), 0);
	kept = b.p;
	wb_reset(&b, 1 << 20); /* keeps its memory */
	ck_assert_ptr_eq(b.p, kept);
	ck_assert_uint_eq(b.len, 0);
	wb_reset(&b, 16); /* gives it back */
	ck_assert_ptr_null(b.p);
	wb_free(&b);
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("query");

	tcase_add_test(tc, test_query_param);
	tcase_add_test(tc, test_query_valid);
	suite_add_tcase(s, tc);
	tc = tcase_create("parser");
	tcase_add_test(tc, test_split_anywhere_same_result);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_split_target);
	suite_add_tcase(s, tc);
	tc = tcase_create("wbuf");
	tcase_add_test(tc, test_wbuf);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(http_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
