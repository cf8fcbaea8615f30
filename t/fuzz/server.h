/*
 * A worker's whole HTTP front end in the fuzzing process: the real
 * connection layer, router, RPC envelope and argument checks,
 * /subscribe's query checks, over a socketpair, with a store that refuses
 * every operation (so every answer comes at once and is deterministic).
 * Included by the fuzz targets that talk HTTP to it.
 */
#ifndef EVENTODB_FUZZ_SERVER_H
#define EVENTODB_FUZZ_SERVER_H

#include <event2/event.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "evlib.h"
#include "http.h"
#include "log.h"
#include "resp.h"
#include "ring.h"
#include "rpc.h"
#include "shm.h"
#include "sse.h"
#include "store.h"
#include "wbuf.h"
#include "worker.h"

static int fz_refuse(void) { return -1; }
static int fz_none(struct store *s) { (void)s; return 0; }
static void fz_close(struct store *s) { (void)s; }

#define FZ_REFUSE (void *)fz_refuse
static const struct store_ops fz_store_ops = {
	.name = "fuzz",
	.close = fz_close,
	.connections = fz_none,
	.write = FZ_REFUSE,
	.get_stream = FZ_REFUSE,
	.get_last = FZ_REFUSE,
	.version = FZ_REFUSE,
	.get_category = FZ_REFUSE,
	.ns_create = FZ_REFUSE,
	.ns_delete = FZ_REFUSE,
	.ns_list = FZ_REFUSE,
	.ns_info = FZ_REFUSE,
	.ns_streams = FZ_REFUSE,
	.ns_categories = FZ_REFUSE,
	.import = FZ_REFUSE,
	.clear = FZ_REFUSE,
};
static struct store fz_store = {&fz_store_ops};

static struct worker fz_w;
static struct config fz_cfg;

static void
fz_server_init(void)
{
	char err[256];
	uint8_t hash[32] = {0};

	if (fz_w.base != NULL)
		return;
	log_setup("error", "console");
	if (config_parse(&fz_cfg, 0, NULL, err, sizeof(err)) != 0)
		abort();
	fz_cfg.test_mode = true; /* no token needed: the checks behind auth are reached */
	fz_cfg.max_body = 64 * 1024;
	fz_w.cfg = &fz_cfg;
	fz_w.shm = shm_create_ex(1, 16, ring_index_size(), ring_part_size(1, 16, 65536));
	if (fz_w.shm == NULL || ring_init(fz_w.shm, 65536) != 0 || shm_ns_put(fz_w.shm, "default", hash) != 0)
		abort();
	fz_w.me = shm_worker(fz_w.shm, 0);
	fz_w.base = event_base_new();
	fz_w.tok = json_tokener_new_ex(65);
	if (fz_w.base == NULL || fz_w.tok == NULL)
		abort();
	json_tokener_set_flags(fz_w.tok, JSON_TOKENER_STRICT);
	pool_init(&fz_w.ctx_pool, "rpc_ctx", sizeof(struct rpc_ctx), 1024, NULL);
	pool_init(&fz_w.resp_pool, "resp", sizeof(struct resp), 1024, resp_free);
	fz_w.store = &fz_store;
	if (sse_start(&fz_w) == NULL)
		abort();
	fz_w.http = http_server_start(&fz_w, -1, -1);
	if (fz_w.http == NULL)
		abort();
}

static void
fz_pump(int turns)
{
	for (int i = 0; i < turns; i++)
		event_base_loop(fz_w.base, EVLOOP_NONBLOCK);
}

/* Sends in[0..n) to a new connection in the pieces that cuts[0..ncuts)
 * (increasing offsets) give, then ends its side; everything the server
 * answered until it closed goes into out, Date lines left out. */
static void
fz_exchange(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, struct wbuf *out)
{
	int sv[2];
	size_t off = 0;
	char buf[65536];

	out->len = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	if (http_server_adopt(fz_w.http, sv[0], HTTP_LISTENER_PUBLIC) != 0)
		abort();
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n;
		while (off < end) {
			ssize_t w = write(sv[1], in + off, end - off);
			if (w > 0) {
				off += (size_t)w;
				continue;
			}
			/* the server stopped reading (a rejection): drain what it sent */
			fz_pump(4);
			{
				ssize_t r = read(sv[1], buf, sizeof(buf));
				if (r > 0)
					wb_add(out, buf, (size_t)r);
				else if (r == 0 || (w < 0 && errno != EAGAIN))
					goto done_writing;
			}
		}
		fz_pump(4);
		for (ssize_t r; (r = read(sv[1], buf, sizeof(buf))) > 0;)
			wb_add(out, buf, (size_t)r);
	}
done_writing:
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 400 && http_server_connections(fz_w.http) > 0; i++) {
		fz_pump(1);
		for (ssize_t r; (r = read(sv[1], buf, sizeof(buf))) > 0;)
			wb_add(out, buf, (size_t)r);
	}
	for (ssize_t r; (r = read(sv[1], buf, sizeof(buf))) > 0;)
		wb_add(out, buf, (size_t)r);
	if (http_server_connections(fz_w.http) != 0) {
		fprintf(stderr, "the server kept a connection after its client left\n");
		abort();
	}
	close(sv[1]);
	/* Date is the clock's, not the input's */
	for (char *p = out->p, *e = out->len > 0 ? out->p + out->len : NULL; p != NULL && p < e;) {
		char *d = memmem(p, (size_t)(e - p), "\r\nDate: ", 8), *nl;
		if (d == NULL)
			break;
		nl = memmem(d + 2, (size_t)(e - d - 2), "\r\n", 2);
		if (nl == NULL)
			break;
		memmove(d, nl, (size_t)(e - nl));
		e -= nl - d;
		out->len = (size_t)(e - out->p);
		p = d + 2;
	}
}

#endif
