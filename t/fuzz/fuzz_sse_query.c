/*
 * The query of GET /subscribe (the one query parser of src/http.c and the
 * parameter checks of src/sse.c) through the real front end: the input is
 * the query string. The answer is a subscription (200, text/event-stream,
 * ": ready" first), a plain-text 400 of SPEC 6.1, or a JSON error (a
 * malformed request line or query, D20); never a crash, and the
 * subscription goes away with its client.
 */
#include "autoconf.h"

#include <string.h>

#include "fuzz.h"
#include "server.h"

static struct wbuf req, out;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int status;

	if (size > 4096)
		return 0;
	fz_server_init();
	req.len = 0;
	wb_lit(&req, "GET /subscribe?");
	wb_add(&req, data, size);
	wb_lit(&req, " HTTP/1.1\r\nHost: f\r\n\r\n");
	fz_exchange((const uint8_t *)req.p, req.len, NULL, 0, &out);
	wb_add(&out, "", 1);
	out.len--;
	if (out.len <= 12 || memcmp(out.p, "HTTP/1.1 ", 9) != 0)
		fprintf(stderr, "answer (%zu bytes): %.*s\n", out.len, (int)out.len, out.p != NULL ? out.p : "");
	FUZZ_CHECK(out.len > 12 && memcmp(out.p, "HTTP/1.1 ", 9) == 0);
	status = atoi(out.p + 9);
	if (status == 200) {
		FUZZ_CHECK(strstr(out.p, "Content-Type: text/event-stream\r\n") != NULL);
		FUZZ_CHECK(strstr(out.p, ": ready\n\n") != NULL);
	} else {
		FUZZ_CHECK(status == 400 || status == 404 || status == 405 || status == 414 || status == 431 ||
		           status == 503 || status == 505);
		FUZZ_CHECK(strstr(out.p, "Content-Type: text/plain") != NULL ||
		           strstr(out.p, "Content-Type: application/json") != NULL);
	}
	FUZZ_CHECK(fz_w.me->st.sse_subscribers == 0);
	return 0;
}
