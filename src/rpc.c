/*
 * The RPC envelope: reads the body (bounded), checks UTF-8, parses it with
 * the worker's reusable json-c tokener (depth-limited, strict), rejects NUL
 * in strings, authenticates, looks the method up and hands over. Also the
 * shared argument helpers and reply functions of every method.
 */
#include "autoconf.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "config.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "resp.h"
#include "rpc.h"
#include "shm.h"
#include "worker.h"

#define ST(f) offsetof(struct stats, f)

static const struct rpc_method methods[] = {
	{"stream.write", rpc_stream_write, ST(rpc_stream_write)},
	{"stream.get", rpc_stream_get, ST(rpc_stream_get)},
	{"stream.last", rpc_stream_last, ST(rpc_stream_last)},
	{"stream.version", rpc_stream_version, ST(rpc_stream_version)},
	{"category.get", rpc_category_get, ST(rpc_category_get)},
	{"ns.create", rpc_ns_create, ST(rpc_ns)},
	{"ns.delete", rpc_ns_delete, ST(rpc_ns)},
	{"ns.list", rpc_ns_list, ST(rpc_ns)},
	{"ns.info", rpc_ns_info, ST(rpc_ns)},
	{"ns.streams", rpc_ns_streams, ST(rpc_ns)},
	{"ns.categories", rpc_ns_categories, ST(rpc_ns)},
	{"sys.version", rpc_sys_version, ST(rpc_sys)},
	{"sys.health", rpc_sys_health, ST(rpc_sys)},
	{NULL, NULL, 0},
};

#define MAX_DEPTH 64

static void
ctx_free(struct rpc_ctx *c)
{
	struct worker *w = c->w;

	if (c->root != NULL)
		json_object_put(c->root);
	c->root = NULL;
	resp_put(w, c->resp);
	c->resp = NULL;
	c->magic = 0;
	pool_put(&w->ctx_pool, c);
}

json_object *
rpc_arg(struct rpc_ctx *c, size_t i)
{
	if (i >= c->nargs)
		return NULL;
	return json_object_array_get_idx(c->root, i + 1);
}

/* The per-method, per-status-class count (/metrics). */
static void
count_answer(struct rpc_ctx *c, int status)
{
	size_t m = c->m != NULL ? (size_t)(c->m - methods) : 0;

	if (c->m == NULL || m >= RPC_NMETHODS)
		return;
	c->w->me->rpc_class[m][status < 300 ? 0 : status < 500 ? 1 : 2]++;
}

const char *
rpc_method_name(size_t i)
{
	return i < sizeof(methods) / sizeof(methods[0]) ? methods[i].name : NULL;
}

void
rpc_ok(struct rpc_ctx *c)
{
	if (c->magic != RPC_CTX_MAGIC)
		abort();
	count_answer(c, 200);
	wb_lit(&c->resp->buf, "\n");
	http_send_json(c->req, 200, &c->resp->buf);
	ctx_free(c);
}

void
rpc_fail(struct rpc_ctx *c, const char *code, const char *message, const char *details)
{
	int status = http_status_for(code);

	if (c->magic != RPC_CTX_MAGIC)
		abort();
	c->w->me->st.rpc_errors++;
	count_answer(c, status);
	if (status >= 500)
		log_error("rpc %s failed: %s: %s", c->m ? c->m->name : "-", code, message);
	c->resp->buf.len = 0;
	c->resp->buf.failed = false;
	http_error_body(&c->resp->buf, code, message, details);
	http_send_json(c->req, status, &c->resp->buf);
	ctx_free(c);
}

void
rpc_failf(struct rpc_ctx *c, const char *code, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	/* the text may hold client strings of any length: a cut keeps it
	 * valid UTF-8, so the JSON error body stays valid */
	va_start(ap, fmt);
	utf8_vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rpc_fail(c, code, msg, NULL);
}

void
rpc_fail_store(struct rpc_ctx *c, const struct store_reply *r, const char *what)
{
	switch (r->status) {
	case ST_NS_NOT_FOUND:
		rpc_failf(c, "NAMESPACE_NOT_FOUND", "Namespace '%s' not found", c->ns);
		break;
	case ST_UNAVAILABLE: {
		const char *e = r->error ? r->error : "no connection";
		if (strncasecmp(e, "database unavailable: ", 22) == 0)
			e += 22;
		rpc_failf(c, "BACKEND_UNAVAILABLE", "Database unavailable: %s", e);
		break;
	}
	default:
		rpc_failf(c, "BACKEND_ERROR", "%s: %s", what, r->error ? r->error : "unknown error");
		break;
	}
}

void
rpc_fail_busy(struct rpc_ctx *c)
{
	rpc_fail(c, "BACKEND_UNAVAILABLE", "Database unavailable: no connection, or too many requests waiting", NULL);
}

int
rpc_json_to_int64(json_object *o, int64_t *out)
{
	if (json_object_is_type(o, json_type_int)) {
		int64_t v = json_object_get_int64(o);
		/* json-c keeps integers above INT64_MAX as uint64. */
		if (v == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
			return -2;
		*out = v;
		return 0;
	}
	if (json_object_is_type(o, json_type_double)) {
		double d = json_object_get_double(o);
		if (!isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0)
			return -2;
		*out = (int64_t)trunc(d);
		return 0;
	}
	return -1;
}

int
rpc_options(struct rpc_ctx *c, size_t i, json_object **opts)
{
	*opts = NULL;
	if (i >= c->nargs)
		return 0;
	*opts = rpc_arg(c, i);
	if (!json_object_is_type(*opts, json_type_object)) {
		rpc_fail(c, "INVALID_REQUEST", "options must be an object", NULL);
		return -1;
	}
	return 0;
}

int
rpc_opt_int(struct rpc_ctx *c, json_object *opts, const char *key, const char *label, int64_t *v,
            bool *present)
{
	json_object *o;
	int rc;

	*present = false;
	if (opts == NULL || !json_object_object_get_ex(opts, key, &o))
		return 0;
	rc = rpc_json_to_int64(o, v);
	if (rc == -1) {
		rpc_failf(c, "INVALID_REQUEST", "%s must be a number", label);
		return -1;
	}
	if (rc == -2) {
		rpc_failf(c, "INVALID_REQUEST", "%s is out of range", label);
		return -1;
	}
	*present = true;
	return 0;
}

int
rpc_opt_str(struct rpc_ctx *c, json_object *opts, const char *key, const char *label, const char **v,
            size_t *len, bool *present)
{
	json_object *o;

	*present = false;
	if (opts == NULL || !json_object_object_get_ex(opts, key, &o))
		return 0;
	if (!json_object_is_type(o, json_type_string)) {
		rpc_failf(c, "INVALID_REQUEST", "%s must be a string", label);
		return -1;
	}
	*v = json_object_get_string(o);
	if (len != NULL)
		*len = (size_t)json_object_get_string_len(o);
	*present = true;
	return 0;
}

int
rpc_batch_size(struct rpc_ctx *c, json_object *opts, int64_t *limit)
{
	bool present;
	int64_t max = c->w->cfg->max_batch_size;

	*limit = 1000;
	if (rpc_opt_int(c, opts, "batchSize", "options.batchSize", limit, &present) != 0)
		return -1;
	if (!present)
		return 0;
	if (*limit < -1) {
		rpc_fail(c, "INVALID_REQUEST", "options.batchSize must be -1 (unlimited) or between 0 and the maximum", NULL);
		return -1;
	}
	if (*limit > max) {
		rpc_failf(c, "INVALID_REQUEST", "options.batchSize must be <= %lld or -1 for unlimited", (long long)max);
		return -1;
	}
	return 0;
}

bool
rpc_name_ok(size_t len)
{
	return len >= 1 && len <= RPC_NAME_MAX;
}

void
rpc_write_message(struct wbuf *b, const struct store_msg *m, bool with_stream)
{
	jw_lit(b, "[");
	jw_cstr(b, m->id);
	jw_lit(b, ",");
	if (with_stream) {
		jw_str(b, m->stream, m->stream_len);
		jw_lit(b, ",");
	}
	jw_cstr(b, m->type);
	jw_lit(b, ",");
	jw_i64(b, m->position);
	jw_lit(b, ",");
	jw_i64(b, m->global_position);
	jw_lit(b, ",");
	/* compact from every store (SPEC D21); keys stay in the order the
	 * store keeps them: PostgreSQL's jsonb its own normalized order (keys
	 * of fewer bytes first, then byte-wise; the last of duplicate keys
	 * wins), the embedded store the order the client sent */
	if (m->data != NULL)
		jw_compact(b, m->data, strlen(m->data));
	else
		jw_lit(b, "null");
	jw_lit(b, ",");
	if (m->metadata != NULL)
		jw_compact(b, m->metadata, strlen(m->metadata));
	else
		jw_lit(b, "null");
	jw_lit(b, ",");
	jw_time_us(b, m->time_us);
	jw_lit(b, "]");
}

/* true if any string or key below o holds a NUL byte. */
static bool
has_nul(json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_string:
		return strlen(json_object_get_string(o)) != (size_t)json_object_get_string_len(o);
	case json_type_array: {
		size_t n = json_object_array_length(o);
		for (size_t i = 0; i < n; i++)
			if (has_nul(json_object_array_get_idx(o, i)))
				return true;
		return false;
	}
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			(void)k;
			if (has_nul(v))
				return true;
		}
		return false;
	}
	default:
		return false;
	}
}

/* Keys cannot hold a NUL in json-c (they are C strings); a "\u0000" in a key
 * truncates it. Detect that in the raw text instead: any \u0000 escape that
 * is not itself escaped. */
static bool
raw_has_nul_escape(const char *s, size_t len)
{
	for (size_t i = 0; i + 5 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++; /* skip the escaped character */
	}
	return false;
}

static bool
all_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return false;
	return true;
}

/* Containers nested more than max deep (the outer array is level 1). */
static bool
too_deep(json_object *o, int level, int max)
{
	if (json_object_is_type(o, json_type_array)) {
		size_t n = json_object_array_length(o);
		if (level > max)
			return true;
		for (size_t i = 0; i < n; i++)
			if (too_deep(json_object_array_get_idx(o, i), level + 1, max))
				return true;
	} else if (json_object_is_type(o, json_type_object)) {
		if (level > max)
			return true;
		json_object_object_foreach(o, k, v) {
			(void)k;
			if (too_deep(v, level + 1, max))
				return true;
		}
	}
	return false;
}

static const char *
tokener_error_text(enum json_tokener_error e)
{
	return json_tokener_error_desc(e);
}

/* Runs the method named by the body's first element. */
static void
dispatch(struct rpc_ctx *c)
{
	const char *name = json_object_get_string(json_object_array_get_idx(c->root, 0));
	struct worker *w = c->w;

	for (const struct rpc_method *mt = methods; mt->name != NULL; mt++) {
		if (strcmp(mt->name, name) == 0) {
			c->m = mt;
			(*(uint64_t *)((char *)&w->me->st + mt->stat_offset))++;
			mt->fn(c);
			return;
		}
	}
	rpc_failf(c, "METHOD_NOT_FOUND", "Unknown method: %s", name);
}

static void
autocreated(void *arg, const char *token, const char *error)
{
	struct rpc_ctx *c = arg;

	if (error != NULL)
		return rpc_fail(c, "BACKEND_ERROR", error, NULL);
	http_add_header(c->req, "X-EventoDB-Token", token);
	dispatch(c);
}

void
rpc_handle(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	int64_t start_us = http_req_start_us(req);
	size_t len;
	struct auth_result a;
	struct rpc_ctx *c;
	const char *body;
	json_object *root, *m;
	enum json_tokener_error jerr;
	bool flushed;

	auth_check(w, req, &a);
	if (a.status != 0) {
		http_send_error(req, a.status, a.code, a.message, a.details);
		return;
	}
	if (http_req_method(req) != HTTPP_POST) {
		http_add_header(req, "Allow", "POST");
		http_send_error(req, 405, "INVALID_REQUEST", "Only POST method allowed", NULL);
		return;
	}
	/* (the connection layer bounds the body by --max-body, at most 1 GiB) */
	body = http_req_body(req, &len);
	if (len > (size_t)INT_MAX) { /* json-c takes an int */
		http_send_error(req, 413, "BODY_TOO_LARGE", "Request body too large", NULL);
		return;
	}
	if (!utf8_valid(body, len)) {
		http_send_error(req, 400, "INVALID_REQUEST", "Request body is not valid UTF-8", NULL);
		return;
	}

	json_tokener_reset(w->tok);
	root = json_tokener_parse_ex(w->tok, body, (int)len);
	jerr = json_tokener_get_error(w->tok);
	flushed = jerr == json_tokener_continue;
	if (flushed) {
		/* Input ended inside a value (or "null" with nothing after it):
		 * flush the tokener with an end marker. */
		root = json_tokener_parse_ex(w->tok, "", 1);
		jerr = json_tokener_get_error(w->tok);
		if (jerr == json_tokener_success && root == NULL && all_blank(body, len))
			jerr = json_tokener_error_parse_eof;
	}
	if (jerr == json_tokener_success && !flushed) {
		size_t off = json_tokener_get_parse_end(w->tok);
		for (; off < len; off++)
			if (body[off] != ' ' && body[off] != '\t' && body[off] != '\n' && body[off] != '\r')
				break;
		if (off < len && len > 0) {
			json_object_put(root);
			root = NULL;
			jerr = json_tokener_error_parse_unexpected;
		}
	}
	if (jerr != json_tokener_success) {
		char details[600], esc[520];
		const char *text = jerr == json_tokener_error_depth ? "nesting deeper than 64 levels" : tokener_error_text(jerr);
		if (root != NULL)
			json_object_put(root);
		if (jerr == json_tokener_error_depth) {
			http_send_error(req, 400, "INVALID_REQUEST", "JSON nested deeper than 64 levels", NULL);
			return;
		}
		jw_escape(text, strnlen(text, 80), esc);
		snprintf(details, sizeof(details), "{\"error\":%s}", esc);
		http_send_error(req, 400, "INVALID_REQUEST", "Malformed JSON request", details);
		return;
	}
	if (too_deep(root, 1, MAX_DEPTH)) {
		json_object_put(root);
		http_send_error(req, 400, "INVALID_REQUEST", "JSON nested deeper than 64 levels", NULL);
		return;
	}
	if (raw_has_nul_escape(body, len) || has_nul(root)) {
		json_object_put(root);
		http_send_error(req, 400, "INVALID_REQUEST",
		                "Strings must not contain \\u0000 (NUL); it cannot be stored", NULL);
		return;
	}
	if (root == NULL || (json_object_is_type(root, json_type_array) && json_object_array_length(root) == 0)) {
		json_object_put(root);
		http_send_error(req, 400, "INVALID_REQUEST", "Missing method name", NULL);
		return;
	}
	if (!json_object_is_type(root, json_type_array)) {
		json_object_put(root);
		http_send_error(req, 400, "INVALID_REQUEST", "Malformed JSON request",
		                "{\"error\":\"request must be a JSON array\"}");
		return;
	}
	m = json_object_array_get_idx(root, 0);
	if (!json_object_is_type(m, json_type_string)) {
		json_object_put(root);
		http_send_error(req, 400, "INVALID_REQUEST", "Method name must be a string", NULL);
		return;
	}

	c = pool_get(&w->ctx_pool);
	if (c == NULL) {
		json_object_put(root);
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->magic = RPC_CTX_MAGIC;
	c->w = w;
	c->req = req;
	c->start_us = start_us;
	c->root = root;
	c->nargs = json_object_array_length(root) - 1;
	/* An authenticated namespace is in the shared table, so it fits. */
	memcpy(c->ns, a.ns, strnlen(a.ns, sizeof(c->ns) - 1));
	c->admin = a.admin;
	c->resp = resp_get(w);
	w->me->st.rpc_requests++;
	if (c->resp == NULL) {
		c->resp = NULL;
		json_object_put(root);
		c->root = NULL;
		pool_put(&w->ctx_pool, c);
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	if (a.autocreate) {
		/* Test mode: create the token's namespace first (SPEC D2). */
		int rc = auth_autocreate(w, &a, autocreated, c);
		if (rc == AUTH_NS_LIMIT) {
			char msg[160];
			auth_ns_limit_message(w, msg, sizeof(msg));
			rpc_fail(c, "NAMESPACE_LIMIT", msg, NULL);
		} else if (rc != 0) {
			rpc_fail_busy(c);
		}
		return;
	}
	dispatch(c);
}
