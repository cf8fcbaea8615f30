/*
 * eventodb-loadtest: what its parts share. main.c reads the options and runs
 * the phases in order; client.c is the HTTP/1.1 client (non-blocking sockets
 * on libevent, responses parsed by libhttp-parser); load.c drives the request
 * mixes over keep-alive connections and keeps the counts and latencies;
 * report.c reads the server's counters before and after and writes the
 * summary and the JSON results.
 */
#ifndef LT_H
#define LT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <http_parser.h>

#include "hist.h"

#define LT_PROG "eventodb-loadtest"

/* ---- options ------------------------------------------------------------ */

struct lt_opts {
	const char *url;
	const char *token;
	const char *mix;
	const char *output;
	const char *profile_dir;
	double duration_s;
	double timeout_s;
	long connections;
	long streams;
	long read_every;
	long batch_size;
	long categories;
	long prefill; /* messages per stream before the run; -1: the mix decides */
	bool quiet;
};

/* ---- the target and the HTTP client (client.c) ---------------------------- */

struct lt_target {
	char host[256];   /* without IPv6 brackets, for getaddrinfo */
	char hostport[300]; /* as written in the URL, for the Host header */
	char base[512];   /* path prefix without trailing '/', usually "" */
	int port;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char auth[640];   /* "Authorization: Bearer ...\r\n" or "" */
	char rpc_prefix[1400]; /* request head of POST /rpc up to the Content-Length value */
	size_t rpc_prefix_len;
};

/* Syntax of --url and --token: 0, or -1 with a message (a usage error). */
int lt_target_parse(struct lt_target *t, const char *url, const char *token, char *err, size_t errlen);
/* Resolves the host (blocking, once, before the event loop runs). */
int lt_target_resolve(struct lt_target *t, char *err, size_t errlen);
/* The bytes of POST <base>/rpc with this JSON body; returns the length, 0 if
 * it does not fit in outlen. */
size_t lt_rpc_request(const struct lt_target *t, const char *body, size_t blen, char *out, size_t outlen);

struct lt_conn;
/* A response (status > 0) or a failure (status 0, body holds the reason). The
 * body is only kept when asked for, or when the status is not 200. */
typedef void (*lt_conn_cb)(struct lt_conn *c, int status, const char *body, size_t len, void *arg);

struct lt_conn *lt_conn_new(struct event_base *base, const struct lt_target *t, double timeout_s, lt_conn_cb cb,
                            void *arg);
/* Sends one request (connecting first if needed; a closed connection is
 * reopened). req must stay valid until the callback. 0, or -1 with the reason
 * in err when it could not even be sent (the callback is then not called). */
int lt_conn_send(struct lt_conn *c, const char *req, size_t len, bool keep_body, char *err, size_t errlen);
void lt_conn_free(struct lt_conn *c);
/* Connections opened so far (reconnects included). */
uint64_t lt_conn_opened(void);

/* One request on a fresh connection, running the loop until it is answered. */
struct lt_fetch {
	int status;     /* 0: no answer (err says why) */
	char *body;     /* NUL-terminated, malloc'd; NULL on failure */
	size_t len;
	char err[256];
};
void lt_fetch_get(struct event_base *base, const struct lt_target *t, const char *path, double timeout_s,
                  struct lt_fetch *f);
void lt_fetch_clear(struct lt_fetch *f);

/* ---- the load (load.c) ----------------------------------------------------- */

enum lt_method { LT_WRITE, LT_GET, LT_CATEGORY, LT_VERSION, LT_NMETHODS };
extern const char *const lt_method_names[LT_NMETHODS];
/* The server's /debug/stats counter each method increments. */
extern const char *const lt_method_counters[LT_NMETHODS];

struct lt_mix {
	const char *name;
	const char *help;
	bool prefill; /* reads before it writes: fill the streams first */
	bool single;  /* one method only (allocations per request are that method's) */
	enum lt_method (*next)(uint64_t k, long read_every);
};
extern const struct lt_mix lt_mixes[];
const struct lt_mix *lt_mix_find(const char *name);

struct lt_method_stats {
	uint64_t count;  /* answered or failed */
	uint64_t errors; /* non-200 answers and failures */
	struct lt_hist hist;
};

struct lt_result {
	double duration_s;
	uint64_t total, errors, failures; /* failures: no answer at all */
	uint64_t prefill_writes;
	struct lt_method_stats m[LT_NMETHODS];
	struct lt_hist all;
	double cpu_s;  /* this process, user + system, during the run */
	long max_rss_kb;
	uint64_t reconnects; /* connections opened during the run */
	char first_error[512];
	bool interrupted;
};

struct lt_load;
struct lt_load *lt_load_new(struct event_base *base, const struct lt_opts *o, const struct lt_mix *mix,
                            const struct lt_target *t);
/* Opens every connection; -1 with a message when the server cannot be reached. */
int lt_load_connect(struct lt_load *l, char *err, size_t errlen);
/* Writes --prefill messages to every stream; -1 with a message on any error. */
int lt_load_prefill(struct lt_load *l, long per_stream, char *err, size_t errlen);
/* The measured run: --duration of requests, then waits for those in flight. */
void lt_load_run(struct lt_load *l, struct lt_result *r);
/* Asks a running lt_load_run to stop early (SIGINT). */
void lt_load_stop(struct lt_load *l);
void lt_load_free(struct lt_load *l);

/* ---- server counters and results (report.c) --------------------------------- */

struct lt_server {
	struct lt_fetch stats_before, stats_after;
	struct lt_fetch allocs_before, allocs_idle, allocs_after;
};

void lt_server_before(struct event_base *base, const struct lt_target *t, const struct lt_opts *o,
                      struct lt_server *s);
void lt_server_after(struct event_base *base, const struct lt_target *t, const struct lt_opts *o,
                     struct lt_server *s);
void lt_server_clear(struct lt_server *s);
/* Prints the summary on stdout and writes the JSON to path; -1 if it cannot
 * be written. */
int lt_report(const struct lt_opts *o, const struct lt_mix *mix, const struct lt_result *r,
              const struct lt_server *s, const char *path, bool *counts_match);

/* Monotonic nanoseconds. */
uint64_t lt_now_ns(void);

#endif
