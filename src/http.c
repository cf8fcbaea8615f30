/*
 * HTTP plumbing: the router that every request enters through, JSON replies
 * and error bodies, pooled response buffers, and request accounting (stats
 * counters, the latency histogram and the request log line).
 */
#include "autoconf.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "evlib.h"
#include "http.h"
#include "import.h"
#include "jsonw.h"
#include "log.h"
#include "profile_http.h"
#include "ring.h"
#include "rpc.h"
#include "shm.h"
#include "sse.h"
#include "worker.h"

struct resp *
resp_get(struct worker *w)
{
	struct resp *r = pool_get(&w->resp_pool);

	if (r == NULL)
		return NULL;
	if (r->magic != RESP_MAGIC) { /* fresh object from malloc (zeroed) */
		r->buf = evbuffer_new();
		if (r->buf == NULL) {
			pool_put(&w->resp_pool, r);
			return NULL;
		}
		r->magic = RESP_MAGIC;
	}
	return r;
}

void
resp_free(void *obj)
{
	struct resp *r = obj;

	if (r->buf != NULL)
		evbuffer_free(r->buf);
	r->buf = NULL;
	r->magic = 0;
}

void
resp_put(struct worker *w, struct resp *r)
{
	if (r == NULL)
		return;
	if (r->magic != RESP_MAGIC)
		abort();
	evbuffer_drain(r->buf, evbuffer_get_length(r->buf));
	pool_put(&w->resp_pool, r);
}

int
http_status_for(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{"INVALID_REQUEST", 400}, {"METHOD_NOT_FOUND", 404}, {"AUTH_REQUIRED", 401},
		{"AUTH_INVALID_TOKEN", 401}, {"AUTH_UNAUTHORIZED", 403}, {"STREAM_NOT_FOUND", 404},
		{"NAMESPACE_NOT_FOUND", 404}, {"NOT_FOUND", 404}, {"STREAM_VERSION_CONFLICT", 409},
		{"NAMESPACE_EXISTS", 409}, {"MESSAGE_EXISTS", 409}, {"BODY_TOO_LARGE", 413},
		{"MESSAGE_TOO_LARGE", 413}, {"BACKEND_UNAVAILABLE", 503}, {"TOO_MANY_REQUESTS", 429},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

void
http_error_body(struct evbuffer *b, const char *code, const char *message, const char *details)
{
	jw_lit(b, "{\"error\":{\"code\":");
	jw_cstr(b, code);
	jw_lit(b, ",\"message\":");
	jw_cstr(b, message);
	if (details != NULL && details[0] != '\0') {
		jw_lit(b, ",\"details\":");
		jw_raw(b, details, strlen(details));
	}
	jw_lit(b, "}}\n");
}

static void
account(struct worker *w, int status, int64_t start_us)
{
	struct stats *st = &w->me->st;
	int64_t us = start_us > 0 ? now_unix_us() - start_us : 0;

	if (status < 300)
		st->http_2xx++;
	else if (status < 500)
		st->http_4xx++;
	else
		st->http_5xx++;
	if (start_us <= 0)
		return;
	if (us <= 1000)
		st->latency_le_1ms++;
	else if (us <= 5000)
		st->latency_le_5ms++;
	else if (us <= 25000)
		st->latency_le_25ms++;
	else if (us <= 100000)
		st->latency_le_100ms++;
	else if (us <= 500000)
		st->latency_le_500ms++;
	else
		st->latency_gt_500ms++;
}

static void
log_request(struct evhttp_request *req, int status, int64_t start_us)
{
	enum log_level lvl = status >= 500 ? LVL_ERROR : LVL_INFO;
	static const char *const names[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH"};
	enum evhttp_cmd_type cmd;
	const char *m = "?";

	if (start_us <= 0 || !log_enabled(lvl))
		return;
	cmd = evhttp_request_get_command(req);
	for (int i = 0; i < 9; i++)
		if ((int)cmd == 1 << i)
			m = names[i];
	log_msg(lvl, "HTTP request method=%s path=%s status=%d duration=%.3fms", m,
	        evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)) ?: "", status,
	        (double)(now_unix_us() - start_us) / 1000.0);
}

static void
send_with_type(struct worker *w, struct evhttp_request *req, int status, struct evbuffer *body,
               const char *ctype, int64_t start_us)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	const char *reason;

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Server", HTTP_SERVER_HEADER);
	switch (status) {
	case 200: reason = "OK"; break;
	case 400: reason = "Bad Request"; break;
	case 401: reason = "Unauthorized"; break;
	case 403: reason = "Forbidden"; break;
	case 404: reason = "Not Found"; break;
	case 405: reason = "Method Not Allowed"; break;
	case 409: reason = "Conflict"; break;
	case 413: reason = "Request Entity Too Large"; break;
	case 429: reason = "Too Many Requests"; break;
	case 501: reason = "Not Implemented"; break;
	case 503: reason = "Service Unavailable"; break;
	default: reason = status >= 500 ? "Internal Server Error" : "Error";
	}
	account(w, status, start_us);
	log_request(req, status, start_us);
	evhttp_send_reply(req, status, reason, body);
}

void
http_send_json(struct worker *w, struct evhttp_request *req, int status, struct evbuffer *body,
               int64_t start_us)
{
	send_with_type(w, req, status, body, "application/json", start_us);
}

void
http_account(struct worker *w, struct evhttp_request *req, int status, int64_t start_us)
{
	account(w, status, start_us);
	log_request(req, status, start_us);
}

void
http_send_text(struct worker *w, struct evhttp_request *req, int status, const char *text, int64_t start_us)
{
	struct resp *r = resp_get(w);

	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	/* Go's http.Error: the text, a newline, nosniff. */
	evbuffer_add_printf(r->buf, "%s\n", text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Content-Type-Options", "nosniff");
	send_with_type(w, req, status, r->buf, "text/plain; charset=utf-8", start_us);
	resp_put(w, r);
}

void
http_send_error(struct worker *w, struct evhttp_request *req, int status, const char *code,
                const char *message, const char *details, int64_t start_us)
{
	struct resp *r = resp_get(w);

	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	http_error_body(r->buf, code, message, details);
	http_send_json(w, req, status, r->buf, start_us);
	resp_put(w, r);
}

static void
send_fixed(struct worker *w, struct evhttp_request *req, const char *text)
{
	struct resp *r = resp_get(w);

	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(r->buf, text, strlen(text));
	http_send_json(w, req, 200, r->buf, 0);
	resp_put(w, r);
}

/* GET /debug/stats: the summed stats slots and this worker's pools. Admin only. */
static void
debug_stats(struct worker *w, struct evhttp_request *req, int64_t start_us)
{
	struct auth_result a;
	struct stats sum;
	struct resp *r;
	bool first = true;

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
	r = resp_get(w);
	if (r == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	shm_stats_sum(w->shm, &sum);
	jw_lit(r->buf, "{\"workers\":");
	jw_i64(r->buf, shm_header(w->shm)->nworkers);
	jw_lit(r->buf, ",\"stats\":{");
#define X(name)                                 \
	if (!first)                             \
		jw_lit(r->buf, ",");            \
	first = false;                          \
	jw_key(r->buf, #name);                  \
	jw_i64(r->buf, (int64_t)sum.name);
	STATS_FIELDS(X)
#undef X
	jw_lit(r->buf, "},\"pools\":[");
	first = true;
	for (struct pool *p = pool_first(); p != NULL; p = p->next) {
		if (!first)
			jw_lit(r->buf, ",");
		first = false;
		jw_lit(r->buf, "{\"name\":");
		jw_cstr(r->buf, p->name);
		jw_lit(r->buf, ",\"worker\":");
		jw_i64(r->buf, w->slot);
		jw_lit(r->buf, ",\"gets\":");
		jw_i64(r->buf, (int64_t)p->gets);
		jw_lit(r->buf, ",\"misses\":");
		jw_i64(r->buf, (int64_t)p->misses);
		jw_lit(r->buf, ",\"in_use\":");
		jw_i64(r->buf, (int64_t)p->in_use);
		jw_lit(r->buf, ",\"high_water\":");
		jw_i64(r->buf, (int64_t)p->high_water);
		jw_lit(r->buf, "}");
	}
	jw_lit(r->buf, "],");
	ring_stats_json(w->shm, r->buf);
	jw_lit(r->buf, "}\n");
	http_send_json(w, req, 200, r->buf, start_us);
	resp_put(w, r);
}

void
http_route(struct evhttp_request *req, void *arg)
{
	struct worker *w = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	int64_t start = now_unix_us();

	w->me->st.http_requests++;
	if (path == NULL)
		path = "";
	if (strcmp(path, "/rpc") == 0) {
		rpc_handle(w, req, start);
	} else if (strcmp(path, "/health") == 0) {
		send_fixed(w, req, "{\"status\":\"ok\"}");
	} else if (strcmp(path, "/version") == 0) {
		send_fixed(w, req, "{\"version\":\"" PACKAGE_VERSION "\"}");
	} else if (strcmp(path, "/debug/stats") == 0) {
		debug_stats(w, req, start);
	} else if (strncmp(path, "/debug/pprof", 12) == 0 && (path[12] == '\0' || path[12] == '/')) {
		profile_http_handle(w, req, path, start);
	} else if (strcmp(path, "/subscribe") == 0) {
		sse_handle(w, req, start);
	} else if (strcmp(path, "/import") == 0) {
		import_handle(w, req, start);
	} else {
		http_send_error(w, req, 404, "NOT_FOUND", "Endpoint not found", NULL, 0);
	}
}
