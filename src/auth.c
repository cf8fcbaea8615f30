/*
 * Authentication of /rpc (and later /subscribe, /import) requests. The token
 * comes from a non-empty ?token= parameter or the Authorization header; its
 * namespace is looked up in the shared table (no database query) and the
 * SHA-256 of the presented token is compared in constant time with the
 * stored hash. Only hashes are ever stored.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "shm.h"
#include "store.h"
#include "worker.h"

bool
auth_valid_ns_id(const char *id, size_t len)
{
	if (len < 1 || len > 54)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = id[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
		if (!alnum && (i == 0 || (ch != '_' && ch != '-')))
			return false;
	}
	return true;
}

static void
fail(struct auth_result *a, int status, const char *code, const char *message)
{
	a->status = status;
	a->code = code;
	a->message = message;
}

/* details {"error":"..."} with the text JSON-escaped. */
static void
details_error(struct auth_result *a, const char *text)
{
	char esc[sizeof(a->details) - 16];
	size_t n = strlen(text);

	if (n > (sizeof(esc) - 3) / 6)
		n = (sizeof(esc) - 3) / 6;
	jw_escape(text, n, esc);
	snprintf(a->details, sizeof(a->details), "{\"error\":%s}", esc);
}

/* Test mode: no token, or one that cannot be used, means the default namespace. */
static void
as_default(struct auth_result *a)
{
	a->status = 0;
	a->details[0] = '\0';
	snprintf(a->ns, sizeof(a->ns), "default");
	a->admin = true;
}

void
auth_check(struct worker *w, struct http_req *req, struct auth_result *a)
{
	bool test = w->cfg->test_mode;

	char tokbuf[TOKEN_MAXLEN + 64];
	const char *tok = NULL, *hdr;
	char perr[160];
	uint8_t want[32], got[32];
	size_t toklen, qlen;

	memset(a, 0, sizeof(*a));

	/* ?token= wins when non-empty, on every path; one that does not fit
	 * any token is taken as unparseable. */
	switch (http_req_param(req, "token", tokbuf, sizeof(tokbuf), &qlen)) {
	case 1:
		tok = tokbuf;
		break;
	case -1:
		tokbuf[0] = '\0';
		tok = tokbuf;
		break;
	default:
		break;
	}
	if (tok == NULL) {
		hdr = http_req_header(req, "Authorization");
		/* values arrive trimmed, so "Bearer " is "Bearer" */
		bool empty = hdr != NULL && strcmp(hdr, "Bearer") == 0;
		if (test && (hdr == NULL || empty || strncmp(hdr, "Bearer ", 7) != 0))
			return as_default(a);
		if (hdr == NULL)
			return fail(a, 401, "AUTH_REQUIRED", "Authorization header required");
		if (empty)
			return fail(a, 401, "AUTH_REQUIRED", "Token required");
		if (strncmp(hdr, "Bearer ", 7) != 0)
			return fail(a, 401, "AUTH_REQUIRED", "Authorization header must use Bearer scheme");
		tok = hdr + 7;
	}
	toklen = strlen(tok);
	if (token_parse(tok, toklen, a->ns, sizeof(a->ns), perr, sizeof(perr)) != 0) {
		if (test)
			return as_default(a);
		details_error(a, perr);
		return fail(a, 401, "AUTH_INVALID_TOKEN", "Invalid token format");
	}
	digest_sha256(tok, toklen, got);
	if (test) {
		/* Like the reference's test mode, a known namespace is not checked
		 * against its hash; an unknown one is created with this token. */
		if (!auth_valid_ns_id(a->ns, strlen(a->ns)))
			return as_default(a);
		a->admin = strcmp(a->ns, "default") == 0;
		if (!shm_ns_get(w->shm, a->ns, want)) {
			a->autocreate = true;
			snprintf(a->token, sizeof(a->token), "%s", tok);
		}
		return;
	}
	/* Unknown namespace and wrong hash answer the same, after the same work. */
	if (!shm_ns_get(w->shm, a->ns, want))
		memset(want, 0xff, sizeof(want));
	if (!digest_equal(want, got, sizeof(want))) {
		char esc[TOKEN_NS_MAX * 6 + 3];
		jw_escape(a->ns, strlen(a->ns), esc);
		snprintf(a->details, sizeof(a->details), "{\"namespace\":%s}", esc);
		return fail(a, 403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace");
	}
	a->admin = strcmp(a->ns, "default") == 0;
}

struct autocreate {
	struct worker *w;
	auth_autocreate_cb done;
	void *arg;
	struct store_ns_create_req req;
	char ns[SHM_NS_ID_MAX];
	char hash[65];
	char token[TOKEN_MAXLEN + 1];
	uint64_t ticket; /* its place in the namespace table, 0 = none */
};

static void
autocreate_done(const struct store_reply *r, void *arg)
{
	struct autocreate *ac = arg;
	uint8_t hash[32];
	char msg[512];

	/* Another worker may have created it a moment ago: that is fine too. */
	if (r->status != ST_OK && r->status != ST_NS_EXISTS) {
		shm_ns_release(ac->w->shm, ac->ns, ac->ticket);
		snprintf(msg, sizeof(msg), "Failed to create namespace: %s", r->error ? r->error : "store error");
		ac->done(ac->arg, NULL, msg);
		free(ac);
		return;
	}
	/* Test mode does not check hashes, so caching ours is right either way;
	 * it fills the place reserved in auth_autocreate. */
	digest_sha256(ac->token, strlen(ac->token), hash);
	if (shm_ns_put(ac->w->shm, ac->ns, hash) != 0)
		log_error("namespace table full: '%s' cannot be cached", ac->ns);
	if (r->status == ST_OK)
		log_info("namespace created in test mode namespace=%s", ac->ns);
	ac->done(ac->arg, ac->token, NULL);
	free(ac);
}

int
auth_autocreate(struct worker *w, const struct auth_result *a, auth_autocreate_cb done, void *arg)
{
	struct autocreate *ac = calloc(1, sizeof(*ac));

	if (ac == NULL)
		return -1;
	ac->w = w;
	ac->done = done;
	ac->arg = arg;
	/* auth_check only marks ids that pass auth_valid_ns_id (<= 54 bytes). */
	memcpy(ac->ns, a->ns, strnlen(a->ns, sizeof(ac->ns) - 1));
	snprintf(ac->token, sizeof(ac->token), "%s", a->token);
	digest_sha256_hex(ac->token, strlen(ac->token), ac->hash);
	ac->req.id = ac->ns;
	ac->req.token_hash = ac->hash;
	ac->req.description = "Auto-created in test mode";
	ac->req.created_at_us = now_unix_us();
	/* as ns.create: a place in the table first, or nothing is created */
	if (shm_ns_reserve(w->shm, ac->ns, &ac->ticket) == SHM_NS_RESERVE_FULL) {
		free(ac);
		return AUTH_NS_LIMIT;
	}
	if (w->store->ops->ns_create(w->store, &ac->req, autocreate_done, ac) != 0) {
		shm_ns_release(w->shm, ac->ns, ac->ticket);
		free(ac);
		return -1;
	}
	return 0;
}

int
auth_require_admin(struct worker *w, struct http_req *req)
{
	struct auth_result a;

	if (http_req_listener(req) == HTTP_LISTENER_ADMIN)
		return 0;
	auth_check(w, req, &a);
	if (a.status == 0 && !a.admin) {
		a.status = 403;
		a.code = "AUTH_UNAUTHORIZED";
		a.message = "Admin token required";
		a.details[0] = '\0';
	}
	if (a.status != 0) {
		http_send_error(req, a.status, a.code, a.message, a.details);
		return -1;
	}
	return 0;
}

void
auth_ns_limit_message(struct worker *w, char *buf, size_t cap)
{
	shm_ns_limit_message(w->shm, buf, cap);
}
