/* Authentication: token from ?token= or "Authorization: Bearer", checked
 * against the shared namespace table with a constant-time comparison. */
#ifndef EVENTODB_AUTH_H
#define EVENTODB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "evlib.h"

struct http_req;
struct worker;

struct auth_result {
	int status;              /* 0 = ok, else the HTTP status to answer */
	const char *code;        /* error code */
	const char *message;
	char details[1280];       /* raw JSON object text or "" */
	char ns[200];            /* namespace of the request (TOKEN_NS_MAX + 1) */
	bool admin;              /* token of the default namespace */
	/* Test mode (SPEC D2): a well-formed token of an unknown namespace; the
	 * caller creates the namespace with this token before going on. */
	bool autocreate;
	char token[TOKEN_MAXLEN + 1];
};

void auth_check(struct worker *w, struct http_req *req, struct auth_result *a);
/* Admin-only endpoints (/debug/..., /metrics; SPEC D9, D23): on the admin
 * listener no token is needed; on the public port the admin token is.
 * 0 to go on, or -1 after answering 401/403. */
int auth_require_admin(struct worker *w, struct http_req *req);

/*
 * Test mode (SPEC D2): creates the namespace of a well-formed token that
 * auth_check marked autocreate, caches it in the shared table, then calls
 * done(arg, token, NULL) — the caller adds X-EventoDB-Token: token to its
 * reply and goes on — or done(arg, NULL, message) on a store error (answer
 * 500 BACKEND_ERROR). Returns -1 without calling done when the store cannot
 * take the request (answer 503), or AUTH_NS_LIMIT when the namespace table
 * is full, before anything is created (answer 507 NAMESPACE_LIMIT with
 * auth_ns_limit_message).
 */
#define AUTH_NS_LIMIT (-2)
typedef void (*auth_autocreate_cb)(void *arg, const char *token, const char *error);
int auth_autocreate(struct worker *w, const struct auth_result *a, auth_autocreate_cb done, void *arg);
void auth_ns_limit_message(struct worker *w, char *buf, size_t cap);
/* Validates a namespace id per SPEC D11. */
bool auth_valid_ns_id(const char *id, size_t len);

#endif
