/*
 * GET /subscribe: Server-Sent Events subscriptions (SPEC 6 with D6) on one
 * worker. Subscribers register, get ": ready", catch up from the store
 * (paged) and then follow the shared write ring, which carries the writes
 * of every worker (and, through the listener, of other servers).
 */
#ifndef EVENTODB_SSE_H
#define EVENTODB_SSE_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct http_req;
struct sse;

/* Sets up this worker's subscriptions (pools, ring wake-up, keepalive
 * timer, the cross-host listener on worker 1). NULL on failure. */
struct sse *sse_start(struct worker *w);
/* SIGTERM: refuse new subscriptions and end every stream cleanly; the
 * drain then waits only for the final bytes to go out. */
void sse_drain(struct worker *w);
/* Worker exit: forget every subscriber (after the connections are closed). */
void sse_stop(struct worker *w);

/* The /subscribe handler. */
void sse_handle(struct http_req *req);

/* A committed write: into the write ring and the stream index, then wake
 * every worker that has subscribers (this one included). gen is the
 * namespace generation seen when the request began (ring_ns_generation). */
void sse_publish(struct worker *w, const char *ns, uint64_t gen, const char *stream, size_t len, int64_t position,
                 int64_t gpos);

#endif
