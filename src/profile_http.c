/*
 * The HTTP side of /debug/pprof/... (the logic and the JSON shapes are in
 * profile.c). http.c routes the whole prefix to profile_http_handle, the one
 * function a new connection layer has to port: admin token required (SPEC
 * D9, like /debug/stats), query parameters read here, replies sent here.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
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
#include "worker.h"

#define PREFIX "/debug/pprof"

/* A CPU profile request waiting for its profile. */
struct wait {
	struct worker *w;
	struct evhttp_request *req;
	int64_t start_us;
	bool json;
};

/* The first non-empty value of name in the query (SPEC D20: empty and
 * valueless parameters are ignored): 1 with the decoded value in out, 0
 * when absent, -1 when it cannot be decoded or does not fit. */
static int
qparam(const char *query, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);

	for (const char *p = query; p != NULL && *p != '\0';) {
		size_t plen = strcspn(p, "&");
		const char *eq = memchr(p, '=', plen);

		if (eq != NULL && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0 && eq + 1 < p + plen) {
			char raw[256], *dec;
			size_t vlen = (size_t)(p + plen - eq - 1), dlen;

			if (vlen >= sizeof(raw))
				return -1;
			memcpy(raw, eq + 1, vlen);
			raw[vlen] = '\0';
			dec = evhttp_uridecode(raw, 1, &dlen);
			if (dec == NULL || dlen + 1 > cap || memchr(dec, '\0', dlen) != NULL) {
				free(dec);
				return -1;
			}
			memcpy(out, dec, dlen + 1);
			free(dec);
			return 1;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return 0;
}

static void
send_body(struct worker *w, struct evhttp_request *req, int status, const char *ctype, struct evbuffer *body,
          int64_t start_us)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Server", HTTP_SERVER_HEADER);
	evhttp_add_header(h, "Cache-Control", "no-store");
	http_account(w, req, status, start_us);
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", body);
}

static void
send_err(struct worker *w, struct evhttp_request *req, const struct profile_error *e, const char *details,
         int64_t start_us)
{
	http_send_error(w, req, e->status, e->code, e->message, details, start_us);
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
	struct worker *w = wt->w;
	struct resp *r = resp_get(w);
	char list[1024];
	int fd = -1;
	struct stat st;

	if (r == NULL) {
		evhttp_send_error(wt->req, 500, "out of memory");
		free(wt);
		return;
	}
	if (wt->json && sum->file[0] != '\0') {
		profile_summary_json(sum, r->buf);
		jw_lit(r->buf, "\n");
		http_send_json(w, wt->req, 200, r->buf, wt->start_us);
	} else if (sum->file[0] == '\0' || (fd = open(sum->file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0 ||
	           evbuffer_add_file(r->buf, fd, 0, st.st_size) != 0) {
		struct evbuffer *details = evbuffer_new();
		char msg[512];

		if (fd >= 0)
			close(fd);
		snprintf(msg, sizeof(msg), "no CPU profile: %s",
		         sum->file[0] == '\0' ? sum->merge_error : strerror(errno));
		if (details != NULL)
			profile_summary_json(sum, details);
		if (details != NULL)
			evbuffer_add(details, "", 1);
		http_error_body(r->buf, "PROFILE_FAILED", msg,
		                details != NULL ? (const char *)evbuffer_pullup(details, -1) : NULL);
		http_send_json(w, wt->req, 500, r->buf, wt->start_us);
		if (details != NULL)
			evbuffer_free(details);
	} else {
		/* evbuffer_add_file owns fd now */
		struct evkeyvalq *h = evhttp_request_get_output_headers(wt->req);
		const char *slash = strrchr(sum->file, '/');
		char disp[PROFILE_PATH_MAX + 64];

		snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", slash ? slash + 1 : sum->file);
		evhttp_add_header(h, "Content-Disposition", disp);
		evhttp_add_header(h, "X-EventoDB-Profile-File", sum->file);
		list_workers(sum, PROFILE_OK, list, sizeof(list));
		evhttp_add_header(h, "X-EventoDB-Profile-Workers", list);
		list_workers(sum, PROFILE_MISSING, list, sizeof(list));
		if (list[0] != '\0')
			evhttp_add_header(h, "X-EventoDB-Profile-Missing", list);
		send_body(w, wt->req, 200, "application/octet-stream", r->buf, wt->start_us);
	}
	resp_put(w, r);
	free(wt);
}

static void
cpu_profile(struct worker *w, struct evhttp_request *req, const char *query, int64_t start_us)
{
	struct profile_error e;
	char secs[32], fmt[16];
	int64_t seconds;
	int rs = qparam(query, "seconds", secs, sizeof(secs));
	int rf = qparam(query, "format", fmt, sizeof(fmt));
	struct wait *wt;

	if (rs < 0 || profile_parse_seconds(rs > 0 ? secs : NULL, &seconds, &e) != 0) {
		if (rs < 0)
			snprintf(e.message, sizeof(e.message), "seconds must be a whole number from 1 to %d",
			         PROFILE_SECONDS_MAX);
		e.status = 400;
		e.code = "INVALID_REQUEST";
		send_err(w, req, &e, NULL, start_us);
		return;
	}
	if (rf < 0 || (rf > 0 && strcmp(fmt, "json") != 0 && strcmp(fmt, "pprof") != 0)) {
		http_send_error(w, req, 400, "INVALID_REQUEST", "format must be pprof or json", NULL, start_us);
		return;
	}
	wt = calloc(1, sizeof(*wt));
	if (wt == NULL) {
		http_send_error(w, req, 500, "INTERNAL_ERROR", "out of memory", NULL, start_us);
		return;
	}
	wt->w = w;
	wt->req = req;
	wt->start_us = start_us;
	wt->json = rf > 0 && strcmp(fmt, "json") == 0;
	if (profile_cpu_begin(w, seconds, cpu_done, wt, &e) != 0) {
		free(wt);
		send_err(w, req, &e, NULL, start_us);
	}
}

static void
allocs(struct worker *w, struct evhttp_request *req, const char *query, int64_t start_us)
{
	struct profile_error e;
	char fmt[16] = "", limit[32] = "", worker[32] = "";
	struct resp *r;

	if (qparam(query, "format", fmt, sizeof(fmt)) < 0 || qparam(query, "limit", limit, sizeof(limit)) < 0 ||
	    qparam(query, "worker", worker, sizeof(worker)) < 0) {
		http_send_error(w, req, 400, "INVALID_REQUEST", "malformed query parameter", NULL, start_us);
		return;
	}
	r = resp_get(w);
	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (profile_allocs(w, fmt, limit, worker, r->buf, &e) != 0) {
		resp_put(w, r);
		send_err(w, req, &e, NULL, start_us);
		return;
	}
	if (strcmp(fmt, "pprof") == 0) {
		send_body(w, req, 200, "text/plain; charset=utf-8", r->buf, start_us);
	} else {
		jw_lit(r->buf, "\n");
		http_send_json(w, req, 200, r->buf, start_us);
	}
	resp_put(w, r);
}

void
profile_http_handle(struct worker *w, struct evhttp_request *req, const char *path, int64_t start_us)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *sub = path + strlen(PREFIX);
	struct auth_result a;
	struct resp *r;

	auth_check(w, req, &a);
	if (a.status == 0 && !a.admin) {
		a.status = 403;
		a.code = "AUTH_UNAUTHORIZED";
		a.message = "Admin token required";
		a.details[0] = '\0';
	}
	if (a.status != 0) {
		http_send_error(w, req, a.status, a.code, a.message, a.details, start_us);
		return;
	}
	if (strcmp(sub, "/profile") == 0) {
		cpu_profile(w, req, query, start_us);
		return;
	}
	if (strcmp(sub, "/allocs") == 0) {
		allocs(w, req, query, start_us);
		return;
	}
	if (strcmp(sub, "/heap") != 0 && strcmp(sub, "/") != 0 && sub[0] != '\0') {
		http_send_error(w, req, 404, "NOT_FOUND", "Endpoint not found", NULL, start_us);
		return;
	}
	r = resp_get(w);
	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (strcmp(sub, "/heap") == 0)
		profile_heap_json(w, r->buf);
	else
		profile_index_json(r->buf);
	jw_lit(r->buf, "\n");
	http_send_json(w, req, 200, r->buf, start_us);
	resp_put(w, r);
}
