/* HTTP plumbing shared by every endpoint: routing, JSON replies and errors,
 * pooled response buffers, request accounting. */
#ifndef EVENTODB_HTTP_H
#define EVENTODB_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct evhttp_request;
struct evbuffer;
struct worker;

#define HTTP_SERVER_HEADER "EventoDB/" PACKAGE_VERSION

/* A pooled response: an evbuffer that is emptied by every send and reused. */
struct resp {
	uint32_t magic;
	struct evbuffer *buf;
};
#define RESP_MAGIC 0x52455350u

struct resp *resp_get(struct worker *w);
void resp_put(struct worker *w, struct resp *r);
void resp_free(void *obj); /* pool destructor */

/* The libevent general callback: routes every request. */
void http_route(struct evhttp_request *req, void *arg);

/* Sends body (drained) with status and Content-Type application/json. */
void http_send_json(struct worker *w, struct evhttp_request *req, int status, struct evbuffer *body,
                    int64_t start_us);
/* Writes {"error":{"code","message"[,"details"]}}\n to b; details is raw
 * JSON object text or NULL. */
void http_error_body(struct evbuffer *b, const char *code, const char *message, const char *details);
/* Counts and logs a reply whose body goes on streaming (SSE). */
void http_account(struct worker *w, struct evhttp_request *req, int status, int64_t start_us);
/* Sends text plus "\n" as text/plain (the SSE validation errors of SPEC 6.1). */
void http_send_text(struct worker *w, struct evhttp_request *req, int status, const char *text, int64_t start_us);
/* Sends an error reply (builds the body in a pooled response). */
void http_send_error(struct worker *w, struct evhttp_request *req, int status, const char *code,
                     const char *message, const char *details, int64_t start_us);
/* Status for an RPC error code (SPEC 2.3). */
int http_status_for(const char *code);

#endif
