/*
 * The JSON-RPC layer: envelope parsing, the method table, argument helpers
 * that answer validation errors themselves, and replies.
 */
#ifndef EVENTODB_RPC_H
#define EVENTODB_RPC_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct worker;
struct http_req;
struct resp;
struct wbuf;

struct rpc_ctx;
typedef void (*rpc_fn)(struct rpc_ctx *c);

struct rpc_method {
	const char *name;
	rpc_fn fn;
	size_t stat_offset; /* counter in struct stats */
};

#define RPC_CTX_MAGIC 0x52504358u

/* One RPC request, from body parse to reply. Pooled per worker. Store
 * requests live here (not on the stack) so the store may keep pointers to
 * them until it calls back. */
struct rpc_ctx {
	uint32_t magic;
	struct worker *w;
	struct http_req *req;
	int64_t start_us;
	const struct rpc_method *m;
	json_object *root;   /* the parsed body; args are its elements 1.. */
	size_t nargs;
	char ns[64];
	bool admin;
	struct resp *resp;
	union {
		struct store_write_req write;
		struct store_category_req cat;
		struct store_ns_create_req nsc;
	} u;
	char id[40];         /* generated/canonical message id */
	char token[256];     /* ns.create: the token to return */
	char hash[65];       /* ns.create: hex sha256 of the token */
	char nsid[64];       /* ns.*: the namespace argument */
	int64_t num;         /* method scratch: expectedVersion, created_at, ... */
	bool flag;
};

/* The /rpc handler (src/router.c). */
void rpc_handle(struct http_req *req);

/* The i-th argument (0-based, after the method name) or NULL if absent. */
json_object *rpc_arg(struct rpc_ctx *c, size_t i);
/* Reply with c->resp->buf plus "\n", status 200; frees the context. */
void rpc_ok(struct rpc_ctx *c);
/* Error reply; frees the context. details is raw JSON or NULL. */
void rpc_fail(struct rpc_ctx *c, const char *code, const char *message, const char *details);
void rpc_failf(struct rpc_ctx *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Answers a non-OK store reply (conflicts, not found, backend errors). what
 * is the reference's prefix for backend errors ("Failed to write message"). */
void rpc_fail_store(struct rpc_ctx *c, const struct store_reply *r, const char *what);
/* A store call returned -1: answer 503. */
void rpc_fail_busy(struct rpc_ctx *c);

/*
 * Option helpers. Each returns 0 when fine (setting *present), or -1 after
 * sending the error reply (the context is gone then: return at once).
 */
/* options argument at index i: absent -> *opts NULL; present but not an object -> error. */
int rpc_options(struct rpc_ctx *c, size_t i, json_object **opts);
/* A numeric option: must be a JSON number that fits int64 after truncation. */
int rpc_opt_int(struct rpc_ctx *c, json_object *opts, const char *key, const char *label, int64_t *v,
                bool *present);
int rpc_opt_str(struct rpc_ctx *c, json_object *opts, const char *key, const char *label, const char **v,
                size_t *len, bool *present);
/* batchSize rules: default 1000, 0 allowed (empty result), -1 unlimited, < -1 or > max -> 400. */
int rpc_batch_size(struct rpc_ctx *c, json_object *opts, int64_t *limit);
/* Checks a name argument: 1..1024 bytes. Sends "<label> must be ..." errors. */
bool rpc_name_ok(size_t len);
#define RPC_NAME_MAX 1024

/* The i-th method's name (i from 0), NULL past the last: /metrics labels. */
const char *rpc_method_name(size_t i);

/* Number conversion used by the helpers (exposed for unit tests):
 * 0 ok, -1 not a number, -2 out of range / not finite. */
int rpc_json_to_int64(json_object *o, int64_t *out);

/* Method families. */
void rpc_stream_write(struct rpc_ctx *c);
void rpc_stream_get(struct rpc_ctx *c);
void rpc_stream_last(struct rpc_ctx *c);
void rpc_stream_version(struct rpc_ctx *c);
void rpc_category_get(struct rpc_ctx *c);
void rpc_ns_create(struct rpc_ctx *c);
void rpc_ns_delete(struct rpc_ctx *c);
void rpc_ns_list(struct rpc_ctx *c);
void rpc_ns_info(struct rpc_ctx *c);
void rpc_ns_streams(struct rpc_ctx *c);
void rpc_ns_categories(struct rpc_ctx *c);
void rpc_sys_version(struct rpc_ctx *c);
void rpc_sys_health(struct rpc_ctx *c);

/* Writes one message array (7 elements, or 8 with the stream name). */
void rpc_write_message(struct wbuf *b, const struct store_msg *m, bool with_stream);

#endif
