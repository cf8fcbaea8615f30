/* /debug/pprof/... over today's evhttp front end (profile_http.c). */
#ifndef EVENTODB_PROFILE_HTTP_H
#define EVENTODB_PROFILE_HTTP_H

#include <stdint.h>

struct evhttp_request;
struct worker;

/* Answers a request whose path starts with /debug/pprof. */
void profile_http_handle(struct worker *w, struct evhttp_request *req, const char *path, int64_t start_us);

#endif
