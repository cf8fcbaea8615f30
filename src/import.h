/*
 * POST /import (SPEC 7.1, D8): the streaming request body (import_filter.c)
 * and the import itself (import.c).
 */
#ifndef EVENTODB_IMPORT_H
#define EVENTODB_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event;
struct event_base;
struct evbuffer;
struct evhttp_request;
struct worker;

/* ---- the connection filter (import_filter.c) ---------------------------- */

/* Body bytes an import may have waiting (more than one line of 1 MiB). */
#define IMPORT_FILTER_BUF (2 * 1024 * 1024)

struct import_filter;

/* evhttp_set_bevcb callback (arg unused): a socket bufferevent behind the
 * filter, for every accepted connection. NULL when out of memory (evhttp
 * then uses a plain socket bufferevent: imports are read whole). */
struct bufferevent *import_filter_bevcb(struct event_base *base, void *arg);

/*
 * The filter that diverted the body of req, an /import request, or NULL when
 * there is none (the body, if any, is then in req's input buffer). *owner is
 * set to NULL, and wake activated, if the connection goes away first.
 */
struct import_filter *import_filter_claim(struct evhttp_request *req, struct import_filter **owner, struct event *wake);
/* The client sent Expect: 100-continue and has not been told to go on. */
bool import_filter_expecting(const struct import_filter *f);
/* The import takes the body: from now on body bytes collect in
 * import_filter_body() as they arrive and wake is activated (never run from
 * inside the filter) when there are more, or the body ended or broke. Sends
 * "100 Continue" first when the client waits for it. */
void import_filter_accept(struct import_filter *f);
struct evbuffer *import_filter_body(struct import_filter *f);
/* The whole body has arrived (the buffer may still hold some of it). */
bool import_filter_ended(const struct import_filter *f);
/* The body's chunked framing is broken: nothing more will come. */
bool import_filter_broken(const struct import_filter *f);
/* The import took bytes out of the buffer: read more input. */
void import_filter_more(struct import_filter *f);
/* The import is over (replied, or failed, or the client left): the rest of
 * the body is read and dropped, then the connection carries the next
 * request. *owner is no longer touched. */
void import_filter_release(struct import_filter *f);

/* For tests: a filter context on its own, fed with import_filter_feed. */
struct import_filter *import_filter_new_detached(void);
void import_filter_free_detached(struct import_filter *f);
/* Runs the input filter over src; what goes on to evhttp lands in dst. */
int import_filter_feed(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst);
/* Test-only: whether the last head seen was an import diverted to the filter. */
bool import_filter_diverting(const struct import_filter *f);

/* ---- the import (import.c) ------------------------------------------------ */

/* The /import handler. */
void import_handle(struct worker *w, struct evhttp_request *req, int64_t start_us);

#endif
