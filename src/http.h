/*
 * The HTTP front end as handlers see it: a request (method, path, query,
 * headers, body) and the reply API. Below the handlers: src/conn.c owns the
 * connections (framing, limits, keep-alive, timeouts) and src/http.c the
 * replies built on it (JSON errors, accounting, the access log). Above
 * them: src/router.c hands each request to its handler.
 *
 * Life of a request: the handler gets it once the body is in (or, for
 * streaming bodies, once the head is in) and owns it until it replies.
 * A plain reply (http_send_*) ends it. A stream (http_stream_begin) ends
 * with http_stream_end, or when the connection goes away: then the close
 * callback runs and the request must not be touched again. If the client
 * leaves while a handler owns a request that is not a stream, the request
 * stays valid until the handler replies (the reply is dropped).
 */
#ifndef EVENTODB_HTTP_H
#define EVENTODB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpp.h"

#define HTTP_SERVER_HEADER "EventoDB/" PACKAGE_VERSION

struct worker;
struct wbuf;
struct http_req;

/* ---- routes (src/router.c) ------------------------------------------------ */

enum http_listener { HTTP_LISTENER_PUBLIC, HTTP_LISTENER_ADMIN };

enum http_body_mode {
	HTTP_BODY_BUFFER,  /* the handler runs with the whole body (bounded by --max-body) */
	HTTP_BODY_DISCARD, /* the body, if any, is read and dropped (bounded) */
	HTTP_BODY_STREAM,  /* the handler runs once the head is in; see http_body_accept */
};

typedef void (*http_handler)(struct http_req *req);

struct http_route {
	const char *path;
	bool prefix; /* path is a prefix ("/debug/pprof/") */
	unsigned listeners; /* 1 << enum http_listener */
	enum http_body_mode body;
	http_handler fn;
};

/* The route of a request, or NULL (404). */
const struct http_route *router_match(const char *path, enum http_listener on);
/* Answers 404 NOT_FOUND. */
void router_not_found(struct http_req *req);

/* ---- the request ------------------------------------------------------------ */

struct worker *http_req_worker(const struct http_req *req);
enum httpp_method http_req_method(const struct http_req *req);
const char *http_req_method_name(const struct http_req *req);
const char *http_req_path(const struct http_req *req);
/* The raw query string (after '?'), NULL when there is none. */
const char *http_req_query(const struct http_req *req);
/* A header's value (first occurrence, blanks trimmed), NULL when absent. */
const char *http_req_header(const struct http_req *req, const char *name);
/* The whole body (HTTP_BODY_BUFFER routes); "" and 0 when there is none. */
const char *http_req_body(const struct http_req *req, size_t *len);
enum http_listener http_req_listener(const struct http_req *req);
int64_t http_req_start_us(const struct http_req *req);
/* The peer address as text (for logs). */
const char *http_req_peer(const struct http_req *req);

/*
 * A query parameter, decoded ('+' is a space, %XX). Empty and valueless
 * parameters are ignored (as if absent); the first non-empty one counts.
 * 1 and the value in out (NUL-terminated, *len bytes), 0 when absent, -1
 * when it does not fit in cap. (Bad escapes and NUL never reach handlers:
 * the connection layer answers them with 400.)
 */
int http_req_param(const struct http_req *req, const char *name, char *out, size_t cap, size_t *len);
/* The same over a raw query string (tests, fuzzing). */
int http_query_param(const char *query, size_t qlen, const char *name, char *out, size_t cap, size_t *len);
/* Whether a raw query string is well-formed: every '%' starts a two-digit
 * hex escape and nothing decodes to NUL. */
bool http_query_valid(const char *query, size_t qlen);

/* ---- plain replies (each ends the request) ---------------------------------- */

/* An extra response header (before the reply or the stream begins). */
void http_add_header(struct http_req *req, const char *name, const char *value);
void http_send(struct http_req *req, int status, const char *ctype, const char *body, size_t len);
/* application/json; the buffer is sent as is. */
void http_send_json(struct http_req *req, int status, struct wbuf *body);
/* {"error":{"code","message"[,"details"]}}\n with status; details is raw
 * JSON object text or NULL. */
void http_send_error(struct http_req *req, int status, const char *code, const char *message, const char *details);
/* text plus "\n" as text/plain (the SSE validation errors of SPEC 6.1). */
void http_send_text(struct http_req *req, int status, const char *text);
/* The error body alone (for other writers). */
void http_error_body(struct wbuf *b, const char *code, const char *message, const char *details);
/* Status for an RPC error code (SPEC 2.3, D20). */
int http_status_for(const char *code);

/* ---- streams (SSE, /import responses) --------------------------------------- */

/* Sends the head of a streamed reply (chunked on HTTP/1.1, until close on
 * 1.0). -1 when the connection is already gone: the request is over then. */
int http_stream_begin(struct http_req *req, int status, const char *ctype);
/* One piece of the stream (one chunk); goes straight to the socket when
 * nothing is queued, the rest is queued. */
void http_stream_send(struct http_req *req, const void *p, size_t n);
/* Bytes queued on the connection, not yet taken by the socket. */
size_t http_stream_queued(const struct http_req *req);
/* The last chunk; the request is over (do not touch it again). */
void http_stream_end(struct http_req *req);
/* The connection closes once this request is over (whatever else the
 * client pipelined behind it is not read). */
void http_close_after(struct http_req *req);
/* Called whenever the queued output has all gone out. */
void http_on_drain(struct http_req *req, void (*cb)(void *arg), void *arg);
/* Called once if the connection goes away before the request is over; the
 * request is gone when it returns. */
void http_on_close(struct http_req *req, void (*cb)(void *arg), void *arg);
/* A stream that never needs more input: small socket send buffer, TCP
 * keepalive, and no read timeout; whatever the client sends is dropped
 * (the connection closes past a small cap). */
void http_stream_tune(struct http_req *req, int keepalive_s);

/* ---- streamed request bodies (HTTP_BODY_STREAM routes) ---------------------- */

/* The handler takes the body: sends 100 Continue if the client waits for
 * it, then reads; cb runs (never from inside these calls) whenever more body
 * bytes arrived or the body ended or broke. -1 when the connection is gone. */
int http_body_accept(struct http_req *req, void (*cb)(void *arg), void *arg);
/* Body bytes received and not consumed yet. */
const char *http_body_data(const struct http_req *req, size_t *len);
/* The handler used n bytes: they are dropped and reading goes on while the
 * unconsumed part stays under its cap (TCP backpressure). */
void http_body_consume(struct http_req *req, size_t n);
bool http_body_ended(const struct http_req *req);
/* The body cannot complete (malformed framing, client gone, timeout). */
bool http_body_broken(const struct http_req *req);
/* The client sent Expect: 100-continue and was not told to go on. */
bool http_body_expecting(const struct http_req *req);

/* Body bytes a streamed body may have waiting. */
#define HTTP_STREAM_BODY_CAP (2 * 1024 * 1024)

/* ---- the server of one worker (src/conn.c) --------------------------------- */

struct http_server;
struct http_server_stats {
	uint32_t connections;       /* open now */
	uint64_t accepted, refused; /* over --max-connections */
	uint64_t accept_pauses;     /* EMFILE/ENFILE back-offs */
};

/* Starts serving on the inherited listening sockets (admin_fd -1: none). */
struct http_server *http_server_start(struct worker *w, int public_fd, int admin_fd);
/* Serves an already connected socket as if it was accepted on listener on
 * (tests and the fuzz targets: a socketpair). 0, or -1. */
int http_server_adopt(struct http_server *s, int fd, enum http_listener on);
/* SIGTERM: stop accepting, close idle connections, mark the others to
 * close after their current request. */
void http_server_drain(struct http_server *s);
/* Connections still open. */
uint32_t http_server_connections(const struct http_server *s);
void http_server_get_stats(const struct http_server *s, struct http_server_stats *out);
/* Worker exit: closes everything (close callbacks run) and frees. */
void http_server_free(struct http_server *s);

#endif
