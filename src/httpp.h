/*
 * The HTTP/1.x request parser behind one small interface. Today it is
 * nodejs/http-parser 2.9 (Debian's libhttp-parser); llhttp can replace it
 * here alone. The parser is push-based: the connection layer feeds bytes and
 * gets callbacks with pieces of the request target and headers and body
 * bytes. It stops (pauses) after the head and after each message, so every
 * decision is taken outside the callbacks and pipelined requests wait their
 * turn.
 */
#ifndef EVENTODB_HTTPP_H
#define EVENTODB_HTTPP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The methods the server serves; anything else is HTTPP_OTHER (405). */
enum httpp_method {
	HTTPP_GET,
	HTTPP_HEAD,
	HTTPP_POST,
	HTTPP_PUT,
	HTTPP_DELETE,
	HTTPP_OPTIONS,
	HTTPP_PATCH,
	HTTPP_OTHER,
};

/* What the owner is told, piece by piece. A non-zero return stops the
 * parser (the owner has noted why). */
struct httpp_hooks {
	int (*url)(void *owner, const char *at, size_t n);
	int (*header_field)(void *owner, const char *at, size_t n);
	int (*header_value)(void *owner, const char *at, size_t n);
	int (*body)(void *owner, const char *at, size_t n);
	int (*chunk)(void *owner); /* a chunk header (chunked bodies) */
};

/* Why httpp_feed stopped. */
enum httpp_event {
	HTTPP_MORE,      /* everything given was consumed: feed more */
	HTTPP_HEAD_DONE, /* the head is complete; httpp_resume, then feed the rest */
	HTTPP_MSG_DONE,  /* the message is complete; httpp_resume before the next */
	HTTPP_STOPPED,   /* a hook returned non-zero */
	HTTPP_ERROR,     /* malformed input: see httpp_error */
};

enum httpp_error {
	HTTPP_E_NONE,
	HTTPP_E_MALFORMED,    /* 400 */
	HTTPP_E_METHOD,       /* an unknown method token (405 if it looks like one) */
	HTTPP_E_HEAD_TOO_BIG, /* 431 */
	HTTPP_E_CODING,       /* a transfer coding other than chunked (501) */
	HTTPP_E_EOF,          /* the input ended inside a message */
};

/* Parser state: an opaque, fixed-size block (no allocation). */
struct httpp {
	_Alignas(8) unsigned char state[32];
	void *owner;
	const struct httpp_hooks *hooks;
	uint8_t event;
	bool in_trailer;
};

void httpp_init(struct httpp *h, const struct httpp_hooks *hooks, void *owner);
/* Starts over (a new connection; the same owner). */
void httpp_reset(struct httpp *h);
/* Feeds n bytes; returns how many were consumed and sets *ev. */
size_t httpp_feed(struct httpp *h, const char *p, size_t n, enum httpp_event *ev);
/* After HTTPP_HEAD_DONE or HTTPP_MSG_DONE: go on. */
void httpp_resume(struct httpp *h);
/* The connection ended: HTTPP_E_NONE between messages, else HTTPP_E_EOF. */
enum httpp_error httpp_finish(struct httpp *h);
enum httpp_error httpp_error(const struct httpp *h);
const char *httpp_error_text(const struct httpp *h);

/* About the message whose head is done. */
enum httpp_method httpp_method(const struct httpp *h);
const char *httpp_method_name(const struct httpp *h);
void httpp_version(const struct httpp *h, unsigned *major, unsigned *minor);
bool httpp_keep_alive(const struct httpp *h);
bool httpp_chunked(const struct httpp *h);
/* Content-Length when one was given. */
bool httpp_length(const struct httpp *h, uint64_t *len);
/* CONNECT or an Upgrade: whatever follows the head is not HTTP. */
bool httpp_upgrade(const struct httpp *h);
/* True while the parser reads trailer fields of a chunked body. */
bool httpp_in_trailer(const struct httpp *h);

/* Splits a request target (origin- or absolute-form) into path and query
 * (offsets into target; qlen 0 and qoff 0 when there is no query). 0, or -1
 * when it is not a valid target. */
int httpp_split_target(const char *target, size_t n, size_t *poff, size_t *plen, size_t *qoff, size_t *qlen);

/* The reason phrase of a status code ("Not Found"). */
const char *httpp_reason(int status);

/* Largest head the parser itself accepts (process-wide); the owner enforces
 * its own, smaller limits exactly. */
void httpp_set_max_head(uint32_t bytes);

#endif
