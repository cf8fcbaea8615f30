/*
 * The RPC envelope and every method's argument checks (src/rpc.c,
 * src/rpc_*.c) through the real front end: the input is a POST /rpc body.
 * The answer is exactly one JSON response: a result, or the error shape of
 * SPEC 2.2 with a code and a message, its status the code's (SPEC 2.3);
 * never a crash. (The store refuses every operation, so a request that
 * passes its checks ends as 503 BACKEND_UNAVAILABLE.)
 */
#include "autoconf.h"

#include <string.h>

#include "fuzz.h"
#include "server.h"

static struct wbuf req, out;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char head[160];
	const char *body, *cl;
	size_t blen;
	int status, n;
	json_object *o, *e, *code;

	if (size > 32 * 1024)
		return 0;
	fz_server_init();
	n = snprintf(head, sizeof(head), "POST /rpc HTTP/1.1\r\nHost: f\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
	             size);
	req.len = 0;
	wb_add(&req, head, (size_t)n);
	wb_add(&req, data, size);
	fz_exchange((const uint8_t *)req.p, req.len, NULL, 0, &out);
	wb_add(&out, "", 1);
	out.len--;
	if (out.len <= 12 || memcmp(out.p, "HTTP/1.1 ", 9) != 0)
		fprintf(stderr, "answer (%zu bytes): %.*s\n", out.len, (int)out.len, out.p != NULL ? out.p : "");
	FUZZ_CHECK(out.len > 12 && memcmp(out.p, "HTTP/1.1 ", 9) == 0);
	status = atoi(out.p + 9);
	body = strstr(out.p, "\r\n\r\n");
	cl = strstr(out.p, "\r\nContent-Length: ");
	FUZZ_CHECK(body != NULL && cl != NULL && cl < body);
	body += 4;
	blen = (size_t)atol(cl + 18);
	FUZZ_CHECK(blen == out.len - (size_t)(body - out.p)); /* exactly one response */
	o = json_tokener_parse(body);
	FUZZ_CHECK(o != NULL || (blen == 5 && memcmp(body, "null\n", 5) == 0));
	if (status != 200) {
		FUZZ_CHECK(json_object_object_get_ex(o, "error", &e) && json_object_object_get_ex(e, "code", &code));
		FUZZ_CHECK(json_object_is_type(code, json_type_string));
		FUZZ_CHECK(http_status_for(json_object_get_string(code)) == status);
	}
	json_object_put(o);
	return 0;
}
