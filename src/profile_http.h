/* /debug/pprof/... on the HTTP front end (profile_http.c; the logic is in profile.c). */
#ifndef EVENTODB_PROFILE_HTTP_H
#define EVENTODB_PROFILE_HTTP_H

struct http_req;

/* The /debug/pprof handler (src/router.c): the whole prefix. */
void profile_http_handle(struct http_req *req);

#endif
