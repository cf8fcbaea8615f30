/*
 * Namespace methods: ns.create, ns.delete, ns.list, ns.info (admin rights
 * per SPEC D1, ids per D11, real counts per D3), ns.streams and
 * ns.categories (the caller's own namespace). Every time is the stored one,
 * in microseconds, trimmed (SPEC D12). A successful create or delete
 * also updates the shared namespace table, so every worker authenticates the
 * new token (or refuses the old one) at once.
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "resp.h"
#include "rpc.h"
#include "shm.h"
#include "worker.h"

#define STORE(c) ((c)->w->store)

static void
forbid(struct rpc_ctx *c)
{
	rpc_fail(c, "AUTH_UNAUTHORIZED", "This operation requires the admin (default namespace) token", NULL);
}

/* The namespace id argument; sends the error and returns -1 when bad. */
static int
ns_id_arg(struct rpc_ctx *c, const char *method, const char *what)
{
	json_object *o = rpc_arg(c, 0);
	size_t len;

	if (c->nargs < 1) {
		rpc_failf(c, "INVALID_REQUEST", "%s requires %s argument: namespace ID", method, what);
		return -1;
	}
	if (!json_object_is_type(o, json_type_string) || json_object_get_string_len(o) == 0) {
		rpc_fail(c, "INVALID_REQUEST", "namespace ID must be a non-empty string", NULL);
		return -1;
	}
	len = (size_t)json_object_get_string_len(o);
	if (!auth_valid_ns_id(json_object_get_string(o), len)) {
		rpc_fail(c, "INVALID_REQUEST",
		         "namespace ID must match [A-Za-z0-9][A-Za-z0-9_-]{0,53}", NULL);
		return -1;
	}
	memcpy(c->nsid, json_object_get_string(o), len + 1);
	return 0;
}

/* ---- ns.create ---------------------------------------------------------- */

static void
create_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;
	uint8_t hash[32];

	if (r->status != ST_OK)
		shm_ns_release(c->w->shm, c->nsid, (uint64_t)c->num);
	if (r->status == ST_NS_EXISTS)
		return rpc_failf(c, "NAMESPACE_EXISTS", "Namespace '%s' already exists", c->nsid);
	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to create namespace");
	digest_sha256(c->token, strlen(c->token), hash);
	/* fills the place reserved in rpc_ns_create; only an id the table had
	 * already (and lost meanwhile to a full table) can fail here */
	if (shm_ns_put(c->w->shm, c->nsid, hash) != 0)
		log_error("namespace table full: '%s' is created but cannot authenticate until restart", c->nsid);
	log_info("namespace created namespace=%s", c->nsid);
	/* the time the registry holds, so ns.info and ns.list say the same */
	jw_lit(b, "{\"createdAt\":");
	jw_time_us(b, c->u.nsc.created_at_us);
	jw_lit(b, ",\"namespace\":");
	jw_cstr(b, c->nsid);
	jw_lit(b, ",\"token\":");
	jw_cstr(b, c->token);
	jw_lit(b, "}");
	rpc_ok(c);
}

void
rpc_ns_create(struct rpc_ctx *c)
{
	struct store_ns_create_req *q = &c->u.nsc;
	json_object *opts, *o;
	const char *desc = "", *tok = NULL;
	size_t toklen = 0;
	bool present;
	char tokns[TOKEN_NS_MAX + 1], err[160];
	uint64_t ticket;

	if (!c->admin)
		return forbid(c);
	if (ns_id_arg(c, "ns.create", "at least 1") != 0)
		return;
	if (rpc_options(c, 1, &opts) != 0 ||
	    rpc_opt_str(c, opts, "description", "options.description", &desc, NULL, &present) != 0 ||
	    rpc_opt_str(c, opts, "token", "options.token", &tok, &toklen, &present) != 0)
		return;
	if (strlen(desc) > 4096)
		return rpc_fail(c, "INVALID_REQUEST", "options.description must be at most 4096 bytes", NULL);
	if (opts != NULL && json_object_object_get_ex(opts, "metadata", &o) && !json_object_is_type(o, json_type_object))
		return rpc_fail(c, "INVALID_REQUEST", "options.metadata must be an object", NULL);
	if (tok != NULL) {
		if (toklen >= sizeof(c->token) || token_parse(tok, toklen, tokns, sizeof(tokns), err, sizeof(err)) != 0) {
			if (toklen >= sizeof(c->token))
				snprintf(err, sizeof(err), "invalid token format: token too long");
			return rpc_failf(c, "INVALID_REQUEST", "Invalid token format: %s", err);
		}
		if (strcmp(tokns, c->nsid) != 0)
			return rpc_failf(c, "INVALID_REQUEST", "Token is for namespace '%s', not '%s'", tokns, c->nsid);
		memcpy(c->token, tok, toklen + 1);
	} else {
		token_generate(c->nsid, c->token);
	}
	digest_sha256_hex(c->token, strlen(c->token), c->hash);
	/* Hold a place in the namespace table before anything is stored, so
	 * no worker can create past the limit (the ticket is in c->num). */
	if (shm_ns_reserve(c->w->shm, c->nsid, &ticket) == SHM_NS_RESERVE_FULL) {
		char msg[160];
		shm_ns_limit_message(c->w->shm, msg, sizeof(msg));
		return rpc_fail(c, "NAMESPACE_LIMIT", msg, NULL);
	}
	c->num = (int64_t)ticket;
	q->id = c->nsid;
	q->description = desc;
	q->created_at_us = now_unix_us();
	q->token_hash = c->hash;
	if (STORE(c)->ops->ns_create(STORE(c), q, create_done, c) != 0) {
		shm_ns_release(c->w->shm, c->nsid, ticket);
		rpc_fail_busy(c);
	}
}

/* ---- ns.delete ---------------------------------------------------------- */

static void
delete_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	if (r->status == ST_NS_NOT_FOUND)
		return rpc_failf(c, "NAMESPACE_NOT_FOUND", "Namespace '%s' not found", c->nsid);
	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to delete namespace");
	shm_ns_remove(c->w->shm, c->nsid);
	log_info("namespace deleted namespace=%s messages=%lld", c->nsid, (long long)r->value);
	jw_lit(b, "{\"deletedAt\":");
	jw_time_us(b, now_unix_us());
	jw_lit(b, ",\"messagesDeleted\":");
	jw_i64(b, r->value);
	jw_lit(b, ",\"namespace\":");
	jw_cstr(b, c->nsid);
	jw_lit(b, "}");
	rpc_ok(c);
}

void
rpc_ns_delete(struct rpc_ctx *c)
{
	if (ns_id_arg(c, "ns.delete", "1") != 0)
		return;
	/* A tenant asking about another namespace learns nothing (D17). */
	if (!c->admin && strcmp(c->nsid, c->ns) != 0)
		return forbid(c);
	if (strcmp(c->nsid, "default") == 0)
		return rpc_fail(c, "INVALID_REQUEST", "The default namespace holds the admin token and cannot be deleted", NULL);
	if (STORE(c)->ops->ns_delete(STORE(c), c->nsid, delete_done, c) != 0)
		rpc_fail_busy(c);
}

/* ---- ns.list / ns.info -------------------------------------------------- */

static void
write_ns_row(struct wbuf *b, const struct store_ns_row *n, bool info)
{
	jw_lit(b, "{\"createdAt\":");
	jw_time_us(b, n->created_at_us);
	jw_lit(b, ",\"description\":");
	jw_cstr(b, n->description ? n->description : "");
	if (info) {
		jw_lit(b, ",\"lastActivity\":");
		if (n->has_last_activity)
			jw_time_us(b, n->last_activity_us);
		else
			jw_lit(b, "null");
	}
	jw_lit(b, ",\"messageCount\":");
	jw_i64(b, n->message_count);
	jw_lit(b, ",\"namespace\":");
	jw_cstr(b, n->id);
	if (info) {
		jw_lit(b, ",\"streamCount\":");
		jw_i64(b, n->stream_count);
	}
	jw_lit(b, "}");
}

static void
list_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to list namespaces");
	jw_lit(b, "[");
	for (size_t i = 0; i < r->nrows; i++) {
		if (i > 0)
			jw_lit(b, ",");
		write_ns_row(b, &r->nss[i], false);
	}
	jw_lit(b, "]");
	rpc_ok(c);
}

void
rpc_ns_list(struct rpc_ctx *c)
{
	if (!c->admin)
		return forbid(c);
	if (STORE(c)->ops->ns_list(STORE(c), list_done, c) != 0)
		rpc_fail_busy(c);
}

static void
info_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;

	if (r->status == ST_NS_NOT_FOUND || (r->status == ST_OK && r->nrows == 0))
		return rpc_failf(c, "NAMESPACE_NOT_FOUND", "Namespace '%s' not found", c->nsid);
	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to get namespace info");
	write_ns_row(&c->resp->buf, &r->nss[0], true);
	rpc_ok(c);
}

void
rpc_ns_info(struct rpc_ctx *c)
{
	if (ns_id_arg(c, "ns.info", "1") != 0)
		return;
	if (!c->admin && strcmp(c->nsid, c->ns) != 0)
		return forbid(c);
	if (STORE(c)->ops->ns_info(STORE(c), c->nsid, info_done, c) != 0)
		rpc_fail_busy(c);
}

/* ---- ns.streams / ns.categories ----------------------------------------- */

static void
streams_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to list streams");
	jw_lit(b, "[");
	for (size_t i = 0; i < r->nrows; i++) {
		const struct store_stream_row *s = &r->streams[i];
		if (i > 0)
			jw_lit(b, ",");
		jw_lit(b, "{\"lastActivity\":");
		jw_time_us(b, s->last_activity_us);
		jw_lit(b, ",\"stream\":");
		jw_cstr(b, s->stream);
		jw_lit(b, ",\"version\":");
		jw_i64(b, s->version);
		jw_lit(b, "}");
	}
	jw_lit(b, "]");
	rpc_ok(c);
}

void
rpc_ns_streams(struct rpc_ctx *c)
{
	json_object *opts;
	const char *prefix = "", *cursor = "";
	size_t plen = 0, clen = 0;
	int64_t limit = 100;
	bool present;

	if (rpc_options(c, 0, &opts) != 0 ||
	    rpc_opt_str(c, opts, "prefix", "prefix", &prefix, &plen, &present) != 0 ||
	    rpc_opt_str(c, opts, "cursor", "cursor", &cursor, &clen, &present) != 0 ||
	    rpc_opt_int(c, opts, "limit", "limit", &limit, &present) != 0)
		return;
	if (present && (limit < 1 || limit > 1000))
		return rpc_fail(c, "INVALID_REQUEST", "limit must be between 1 and 1000", NULL);
	if (plen > RPC_NAME_MAX || clen > RPC_NAME_MAX)
		return rpc_failf(c, "INVALID_REQUEST", "prefix and cursor must be at most %d bytes", RPC_NAME_MAX);
	if (STORE(c)->ops->ns_streams(STORE(c), c->ns, prefix, cursor, limit, streams_done, c) != 0)
		rpc_fail_busy(c);
}

static void
categories_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to list categories");
	jw_lit(b, "[");
	for (size_t i = 0; i < r->nrows; i++) {
		if (i > 0)
			jw_lit(b, ",");
		jw_lit(b, "{\"category\":");
		jw_cstr(b, r->cats[i].category);
		jw_lit(b, ",\"messageCount\":");
		jw_i64(b, r->cats[i].message_count);
		jw_lit(b, ",\"streamCount\":");
		jw_i64(b, r->cats[i].stream_count);
		jw_lit(b, "}");
	}
	jw_lit(b, "]");
	rpc_ok(c);
}

void
rpc_ns_categories(struct rpc_ctx *c)
{
	if (STORE(c)->ops->ns_categories(STORE(c), c->ns, categories_done, c) != 0)
		rpc_fail_busy(c);
}
