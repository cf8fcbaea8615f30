/*
 * The HTTP side of /debug/pprof/... (the logic and the JSON shapes are in
 * profile.c). http.c routes the whole prefix to profile_http_handle, the one
 * function a new connection layer has to port: admin token required (SPEC
 * D9, like /debug/stats), query parameters read here, replies sent here.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "profile.h"
#include "profile_http.h"
#include "resp.h"
#include "wbuf.h"
#include "worker.h"

#define PREFIX "/debug/pprof"
#define NO_STORE "no-store"

/* A CPU profile request waiting for its profile. */
struct wait {
	struct worker *w;
	struct http_req *req;
	bool json;
};

/* A query parameter through the one parser (empty ones ignored): 1, 0
 * when absent, -1 when it does not fit. */
static int
qparam(struct http_req *req, const char *name, char *out, size_t cap)
{
	size_t len;
	int rc = http_req_param(req, name, out, cap, &len);

	if (rc <= 0)
		out[0] = '\0';
	return rc;
}

/* profile.c writes evbuffers (cold paths); the reply goes from the bytes. */
static void
send_evbuffer(struct http_req *req, int status, const char *ctype, struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	const char *p = n > 0 ? (const char *)evbuffer_pullup(b, (ev_ssize_t)n) : "";

	http_add_header(req, "Cache-Control", NO_STORE);
	if (n > 0 && p == NULL)
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
	else
		http_send(req, status, ctype, p, n);
}

static void
send_err(struct http_req *req, const struct profile_error *e)
{
	http_send_error(req, e->status, e->code, e->message, NULL);
}

/* Worker numbers of the given state, "1,2". */
static void
list_workers(const struct profile_summary *sum, enum profile_worker_state st, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (uint32_t i = 0; i < sum->nworkers && n + 12 < cap; i++)
		if (sum->workers[i].state == st)
			n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? "," : "", sum->workers[i].worker);
}

static void
cpu_done(void *arg, const struct profile_summary *sum)
{
	struct wait *wt = arg;
	struct http_req *req = wt->req;
	struct evbuffer *b = evbuffer_new();
	char list[1024];
	int fd = -1;
	struct stat st;

	free(wt);
	if (b == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	if (sum->file[0] == '\0' || (fd = open(sum->file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0 ||
	    evbuffer_add_file(b, fd, 0, st.st_size) != 0) {
		struct evbuffer *details = evbuffer_new();
		struct resp *r = resp_get(http_req_worker(req));
		char msg[512];

		if (fd >= 0)
			close(fd);
		snprintf(msg, sizeof(msg), "no CPU profile: %s", sum->file[0] == '\0' ? sum->merge_error : strerror(errno));
		if (details != NULL) {
			profile_summary_json(sum, details);
			evbuffer_add(details, "", 1);
		}
		if (r == NULL) {
			http_send_error(req, 500, "PROFILE_FAILED", msg, NULL);
		} else {
			http_error_body(&r->buf, "PROFILE_FAILED", msg,
			                details != NULL ? (const char *)evbuffer_pullup(details, -1) : NULL);
			http_send_json(req, 500, &r->buf);
			resp_put(http_req_worker(req), r);
		}
		if (details != NULL)
			evbuffer_free(details);
	} else {
		const char *slash = strrchr(sum->file, '/');
		char disp[PROFILE_PATH_MAX + 64];

		snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", slash ? slash + 1 : sum->file);
		http_add_header(req, "Content-Disposition", disp);
		http_add_header(req, "X-EventoDB-Profile-File", sum->file);
		list_workers(sum, PROFILE_OK, list, sizeof(list));
		http_add_header(req, "X-EventoDB-Profile-Workers", list);
		list_workers(sum, PROFILE_MISSING, list, sizeof(list));
		if (list[0] != '\0')
			http_add_header(req, "X-EventoDB-Profile-Missing", list);
		send_evbuffer(req, 200, "application/octet-stream", b);
	}
	evbuffer_free(b);
}

static void
cpu_done_json(void *arg, const struct profile_summary *sum)
{
	struct wait *wt = arg;
	struct http_req *req = wt->req;
	struct evbuffer *b;

	if (sum->file[0] == '\0') {
		cpu_done(arg, sum); /* the error answer */
		return;
	}
	free(wt);
	b = evbuffer_new();
	if (b == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	profile_summary_json(sum, b);
	evbuffer_add(b, "\n", 1);
	send_evbuffer(req, 200, "application/json", b);
	evbuffer_free(b);
}

static void
cpu_profile(struct worker *w, struct http_req *req)
{
	struct profile_error e;
	char secs[32], fmt[16];
	int64_t seconds;
	int rs = qparam(req, "seconds", secs, sizeof(secs));
	int rf = qparam(req, "format", fmt, sizeof(fmt));
	struct wait *wt;

	if (rs < 0 || profile_parse_seconds(rs > 0 ? secs : NULL, &seconds, &e) != 0) {
		if (rs < 0)
			snprintf(e.message, sizeof(e.message), "seconds must be a whole number from 1 to %d",
			         PROFILE_SECONDS_MAX);
		e.status = 400;
		e.code = "INVALID_REQUEST";
		send_err(req, &e);
		return;
	}
	if (rf < 0 || (rf > 0 && strcmp(fmt, "json") != 0 && strcmp(fmt, "pprof") != 0)) {
		http_send_error(req, 400, "INVALID_REQUEST", "format must be pprof or json", NULL);
		return;
	}
	wt = calloc(1, sizeof(*wt));
	if (wt == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	wt->w = w;
	wt->req = req;
	wt->json = rf > 0 && strcmp(fmt, "json") == 0;
	if (profile_cpu_begin(w, seconds, wt->json ? cpu_done_json : cpu_done, wt, &e) != 0) {
		free(wt);
		send_err(req, &e);
	}
}

static void
allocs(struct worker *w, struct http_req *req)
{
	struct profile_error e;
	char fmt[16] = "", limit[32] = "", worker[32] = "";
	struct evbuffer *b;

	if (qparam(req, "format", fmt, sizeof(fmt)) < 0 || qparam(req, "limit", limit, sizeof(limit)) < 0 ||
	    qparam(req, "worker", worker, sizeof(worker)) < 0) {
		http_send_error(req, 400, "INVALID_REQUEST", "malformed query parameter", NULL);
		return;
	}
	b = evbuffer_new();
	if (b == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	if (profile_allocs(w, fmt, limit, worker, b, &e) != 0) {
		send_err(req, &e);
	} else if (strcmp(fmt, "pprof") == 0) {
		send_evbuffer(req, 200, "text/plain; charset=utf-8", b);
	} else {
		evbuffer_add(b, "\n", 1);
		send_evbuffer(req, 200, "application/json", b);
	}
	evbuffer_free(b);
}

void
profile_http_handle(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	const char *path = http_req_path(req), *sub;
	struct evbuffer *b;

	if (strncmp(path, PREFIX, strlen(PREFIX)) != 0 || (path[strlen(PREFIX)] != '\0' && path[strlen(PREFIX)] != '/')) {
		router_not_found(req);
		return;
	}
	if (auth_require_admin(w, req) != 0)
		return;
	sub = path + strlen(PREFIX);
	if (strcmp(sub, "/profile") == 0) {
		cpu_profile(w, req);
		return;
	}
	if (strcmp(sub, "/allocs") == 0) {
		allocs(w, req);
		return;
	}
	if (strcmp(sub, "/heap") != 0 && strcmp(sub, "/") != 0 && sub[0] != '\0') {
		router_not_found(req);
		return;
	}
	b = evbuffer_new();
	if (b == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	if (strcmp(sub, "/heap") == 0)
		profile_heap_json(w, b);
	else
		profile_index_json(b);
	evbuffer_add(b, "\n", 1);
	send_evbuffer(req, 200, "application/json", b);
	evbuffer_free(b);
}
