/*
 * HTTP request framing through the real connection layer (src/conn.c and
 * the parser behind src/httpp.c): whatever bytes a client sends, the
 * answers are the same whether they arrive at once or split at points
 * taken from the input itself; the server never crashes, never keeps the
 * connection after the client left, and every answer it starts is a
 * complete HTTP/1.x response. (The stats endpoints answer the process's
 * counters, which every exchange moves: for inputs that reach them only
 * the framing and the crash properties hold.)
 */
#include "autoconf.h"

#include <string.h>

#include "fuzz.h"
#include "server.h"

static struct wbuf whole, split;

static bool
responses_framed(const char *p, size_t n)
{
	/* every response starts with a status line; nothing else comes first */
	return n == 0 || (n >= 12 && memcmp(p, "HTTP/1.", 7) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cuts[8], ncuts = 0;
	uint32_t h = 2166136261u;

	if (size > 48 * 1024)
		return 0;
	fz_server_init();
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	for (size_t i = 0; i < 8 && size > 1; i++) {
		size_t at = (h >> (i * 3)) % size;
		if (at > 0 && (ncuts == 0 || at > cuts[ncuts - 1]))
			cuts[ncuts++] = at;
	}
	fz_exchange(data, size, NULL, 0, &whole);
	fz_exchange(data, size, cuts, ncuts, &split);
	FUZZ_CHECK(responses_framed(whole.p, whole.len));
	if (memmem(data, size, "/metrics", 8) != NULL || memmem(data, size, "/debug", 6) != NULL)
		return 0;
	if (whole.len != split.len || (whole.len > 0 && memcmp(whole.p, split.p, whole.len) != 0)) {
		fprintf(stderr, "whole (%zu bytes):\n%.*s\n---- split (%zu bytes):\n%.*s\n", whole.len, (int)whole.len,
		        whole.p, split.len, (int)split.len, split.p);
		FUZZ_CHECK(!"the same input split gave different answers");
	}
	return 0;
}
