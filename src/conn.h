/*
 * Between the connection layer (src/conn.c) and the reply helpers and
 * accounting of src/http.c. Handlers use src/http.h only.
 */
#ifndef EVENTODB_CONN_H
#define EVENTODB_CONN_H

#include <stddef.h>
#include <stdint.h>

struct http_req;

/* What the access log and the stats need of a finished request. */
struct http_done {
	int status;
	uint64_t body_bytes; /* response body bytes sent (chunk framing excluded) */
	int64_t start_us, end_us;
	const char *method, *path, *query, *peer, *user_agent, *referer;
	unsigned minor;
};

/* http.c: a reply's head went out (status counters, latency histogram). */
void http_account_head(struct http_req *req, int status);
/* http.c: a request is over (the access log line). */
void http_account_done(const struct http_done *d);
/* http.c: the access log (--access-log): opened after fork in each worker,
 * flushed every second and at exit, reopened on SIGHUP/SIGUSR1. */
int http_access_log_open(const char *dest);
void http_access_log_flush(void);
void http_access_log_reopen(void);
void http_access_log_close(void);
void http_access_log_switch(const char *dest);

#endif
