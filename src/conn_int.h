/*
 * The connection layer's own structures, shared by its three files:
 * src/conn.c (connections, I/O, parsing, the life of a request),
 * src/conn_reply.c (the reply API handlers use, src/http.h) and
 * src/conn_server.c (accepting, the per-worker server). Nothing outside
 * them includes this.
 */
#ifndef EVENTODB_CONN_INT_H
#define EVENTODB_CONN_INT_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <time.h>

#include "http.h"
#include "httpp.h"
#include "pool.h"
#include "wbuf.h"

struct config;
struct worker;

#define CONN_MAGIC 0x434f4e4eu /* "CONN" */
#define REQ_MAGIC 0x52455155u  /* "REQU" */
#define RBUF_MAGIC 0x52425546u /* "RBUF" */

#define READ_CHUNK (64 * 1024)       /* one read() */
#define URI_MAX 8192                 /* 414 above */
#define HEADERS_MAX 100              /* 431 above */
#define STASH_MAX (64 * 1024)        /* pipelined input kept while a request runs */
#define OUT_HIGH (1024 * 1024)       /* queued output that stops taking requests */
#define LINGER_MS 2000               /* a closing connection drops input this long */
#define LINGER_BYTES (1024 * 1024)   /* ... or this much */
#define STREAM_INPUT_MAX (64 * 1024) /* input a stream (SSE) drops before closing */
#define WRITE_TIMEOUT_S 120          /* no write progress: the peer is gone */
#define FRAMING_SLACK (64 * 1024)    /* chunk framing bytes allowed beyond ... */
#define FRAMING_PER_CHUNK 64         /* ... this much per chunk */
#define REJECT_EXTRA 64              /* refused connections lingering at once */
#define KEEP_HEAD (64 * 1024)        /* pooled buffers keep this much memory */
#define KEEP_BODY (1024 * 1024)
#define KEEP_OUT (256 * 1024)
#define ACCEPT_PAUSE_MIN_MS 50
#define ACCEPT_PAUSE_MAX_MS 500
/* a worker that leaves a connection to a less loaded one waits this long
 * before it takes it after all */
#define ACCEPT_DEFER_US 1000
#define ACCEPT_UNHONORED_MAX 8
#define ACCEPT_BALANCE_OFF_US 100000

enum phase {
	PH_IDLE,   /* between requests */
	PH_HEAD,   /* reading a request head */
	PH_BODY,   /* reading its body */
	PH_WAIT,   /* the message is in; a handler has it */
	PH_LINGER, /* answered and closing: dropping input */
};

/* A request's storage, pooled: the head (target, then name\0value\0 pairs,
 * then the path and query as C strings), the body, extra reply headers. */
struct rbuf {
	uint32_t magic;
	struct wbuf head;
	struct wbuf body;
	size_t body_off; /* streamed bodies: bytes consumed at the front */
	struct wbuf extra;
	uint32_t hname[HEADERS_MAX], hval[HEADERS_MAX];
};

/* Queued bytes (pending output, or input waiting behind a request). */
struct obuf {
	struct wbuf b;
	size_t off;
};

struct conn;

enum { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE };

struct http_req {
	uint32_t magic;
	struct conn *c;
	struct rbuf *rb;
	const struct http_route *route;
	enum httpp_method method;
	const char *method_name;
	unsigned minor;
	const char *path, *query;
	uint16_t nhdr;
	int64_t start_us;
	int status;
	uint64_t body_sent;
	bool held;      /* a handler owns it */
	bool counted;   /* in the requests_in_flight gauge */
	bool replied;   /* the reply (or the stream's end) is queued */
	bool streaming; /* a streamed reply is under way */
	bool stream_quiet; /* the stream takes no input */
	bool head_only; /* HEAD */
	bool keep_alive;
	bool expect, continued;
	bool accepted, ended, broken, body_event;
	void (*drain_cb)(void *);
	void *drain_arg;
	void (*close_cb)(void *);
	void *close_arg;
	void (*body_cb)(void *);
	void *body_arg;
};

struct conn {
	uint32_t magic;
	struct http_server *srv;
	TAILQ_ENTRY(conn) link;
	TAILQ_ENTRY(conn) klink; /* in srv->kicked */
	int fd;
	enum http_listener on;
	enum phase phase;
	struct event *rd, *wr;
	struct httpp parser;
	struct http_req req;
	struct obuf *out;   /* pending output */
	struct obuf *stash; /* input not parsed yet */
	enum http_body_mode mode;
	bool closing;    /* close once the current reply is out */
	bool dead;       /* the socket is unusable; finish on the next turn */
	bool reading;    /* rd is added */
	bool writing;    /* wr is added */
	uint8_t piece;   /* what the last head piece was (PIECE_*) */
	bool refused;    /* over --max-connections: only the 503 and the linger */
	bool kicked;     /* in srv->kicked */
	uint32_t url_len, head_bytes, target_len;
	uint64_t body_in, raw_in, nchunks, dropped;
	int64_t deadline_us; /* PH_HEAD: when the head must be in */
	/* why a hook stopped the parser */
	int stop_status;
	const char *stop_code, *stop_msg;
	char peer[48];
};

TAILQ_HEAD(conn_list, conn);

struct http_server;
void conn_publish_count(struct http_server *s);

struct http_server {
	struct worker *w;
	struct event_base *base;
	struct event *lev[2]; /* the listening sockets' read events (public, admin) */
	int lfd[2];
	struct event *ev_accept; /* resumes accepting after EMFILE/ENFILE */
	struct event *ev_defer;  /* resumes accepting after leaving a connection to another worker */
	int unhonored;           /* deferrals in a row after which the connection was still there */
	int64_t balance_off_until_us; /* no deferring before this (monotonic) */
	struct event *ev_kick;   /* runs the connections in kicked */
	struct conn_list kicked;
	int accept_pause_ms;
	bool accept_paused;
	struct pool conn_pool, rbuf_pool, obuf_pool;
	struct conn_list conns;
	uint32_t nconns, nrefused_lingering;
	uint64_t accepted, refused, pauses;
	bool draining;
	int64_t pause_logged_us;
	uint64_t pauses_logged;
	char *scratch;
	char date[40];
	time_t date_sec;
};

/* Shared by conn.c (connections, parsing, the request's life),
 * conn_reply.c (the reply API) and conn_server.c (accepting). */
extern const struct httpp_hooks conn_hooks;
const struct config *cfg_of(const struct conn *c);
struct timeval tv_ms(int64_t ms);
void arm_read(struct conn *c);
void stop_read(struct conn *c);
void kick(struct conn *c);
void mark_dead(struct conn *c);
void count_in(struct http_req *r);
void count_out(struct http_req *r);
struct obuf *obuf_get(struct http_server *s);
void obuf_put(struct http_server *s, struct obuf *o);
void obuf_dtor(void *obj);
void rbuf_dtor(void *obj);
void conn_dtor(void *obj);
const char *date_header(struct http_server *s);
size_t queued(const struct conn *c);
void conn_write(struct conn *c, const struct iovec *iov, int cnt);
void start_close(struct conn *c);
void conn_finish(struct conn *c);
void conn_free(struct conn *c);
void begin_request(struct conn *c);
void note_body_event(struct http_req *r);
const char *find_header(const struct http_req *r, const char *name);
void reject(struct conn *c, int status, const char *code, const char *message);
void reply_done(struct conn *c);
void request_done(struct conn *c);
bool body_full(const struct conn *c);
void on_read(evutil_socket_t fd, short what, void *arg);
void on_write(evutil_socket_t fd, short what, void *arg);
void on_kick(evutil_socket_t fd, short what, void *arg);

#endif
