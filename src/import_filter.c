/*
 * The connection filter that lets POST /import stream its body (SPEC 7.1,
 * D8) on the one port and path, while everything else stays with evhttp.
 *
 * libevent 2.1's evhttp reads a whole request body before it runs the
 * handler, and bounds it by the body limit. So every accepted connection
 * gets a bufferevent_filter between its socket and evhttp (evhttp_set_bevcb).
 * Its input side follows the HTTP framing of every request, as evhttp does:
 *
 *  - Ordinary requests pass through unchanged; their bodies move as whole
 *    evbuffer chains, so the cost is one scan of each request head.
 *  - The head of a request for /import goes on to evhttp without its body
 *    framing (Content-Length: 0, no Transfer-Encoding, no Expect), so evhttp
 *    runs the handler at once. The body that follows is decoded here
 *    (Content-Length or chunked) into the import's own buffer once the
 *    handler has accepted it (import_filter_accept). While that buffer holds
 *    IMPORT_FILTER_BUF bytes, the filter takes no input: bytes wait in the
 *    socket bufferevent (up to its read watermark), then in the kernel, and
 *    TCP flow control stops the client. Memory stays constant.
 *  - After the body, and once the import lets go (import_filter_release), the
 *    connection is back to pass-through for the next keep-alive request. A
 *    body the import no longer wants (it failed early) is read and dropped.
 *  - Framing the filter cannot follow exactly as evhttp would (a malformed
 *    head, an invalid length) turns it into a plain pipe for the rest of the
 *    connection; evhttp then rejects the request and closes the connection.
 *
 * The import is never called from inside the filter: the filter activates
 * the import's event, which runs from the event loop.
 *
 * The output side writes to the socket itself rather than through the
 * socket bufferevent's buffer. evhttp takes "the filter's output is empty"
 * (its write callback) to mean "sent": it then starts the next request, or
 * frees the connection after a "Connection: close" reply. With output only
 * moved on to the socket bufferevent, that close would drop what had not
 * reached the kernel yet. Written straight to the socket, the bytes the
 * kernel does not take stay in the filter's output buffer, where evhttp and
 * the SSE flow control see them; the socket bufferevent's write event says
 * when to go on. Two more things evhttp relies on that a filter does not
 * give by itself: callbacks deferred to the event loop (evhttp sets its
 * write callback after adding the data), and output added while writing is
 * disabled being sent once evhttp enables it (the flush event). And a
 * filter's write timeout runs whenever writing is enabled, where a socket's
 * runs only while output waits: a subscription or an import quiet for the
 * timeout would be cut off. So the timer is stopped once all is written
 * (the idle event; libevent has no call for it, the timer is the filter's
 * ev_write in bufferevent_struct.h).
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "import.h"
#include "log.h"

#define FILTER_MAGIC 0x49464c54u     /* "IFLT" */
#define HEAD_MAX (64 * 1024 + 1024)  /* evhttp's header limit (worker.c) and some */
#define LINE_MAX_CHUNK 1024          /* a chunk-size or trailer line */
#define UNDER_READ_HIGH (256 * 1024) /* socket bytes read ahead of the filter */
#define VALUE_MAX 256                /* the header values the filter reads */

enum state {
	S_HEAD,       /* at the start of a request head */
	S_BODY,       /* `left` bytes of a Content-Length body */
	S_CHUNK_SIZE, /* at a chunk-size line (or the blank line after data) */
	S_CHUNK_DATA, /* `left` bytes of chunk data */
	S_TRAILER,    /* trailer lines up to a blank one */
	S_HOLD,       /* import body complete: input waits until the release */
	S_PIPE,       /* framing not followed: everything passes */
};

enum taker {
	T_NONE,    /* the body goes to evhttp */
	T_PENDING, /* an import body, the handler has not taken it yet */
	T_IMPORT,  /* into f->body */
	T_DISCARD, /* dropped */
};

struct import_filter {
	uint32_t magic;
	struct bufferevent *bev;   /* the filter: what evhttp sees */
	struct bufferevent *under; /* the socket */
	enum state st;
	enum taker taker;
	int64_t left;
	size_t scanned; /* head bytes searched for its end, without success */
	bool expect;    /* Expect: 100-continue not yet answered */
	bool ended;     /* the import body is complete */
	bool broken;    /* its chunked framing is not */
	bool starved;   /* input stopped on a full body buffer */
	bool listed;
	struct evbuffer *body;
	struct import_filter **owner;
	struct event *wake;
	struct event *flush; /* output waiting for evhttp to enable writing */
	struct event *idle;  /* all output written: stop the write timeout */
	struct evbuffer_cb_entry *out_cb;
	LIST_ENTRY(import_filter) link;
};

/* Filters with an /import head on its way to the handler (one process, one
 * worker, one list). */
static LIST_HEAD(, import_filter) pending = LIST_HEAD_INITIALIZER(pending);

static void
unlist(struct import_filter *f)
{
	if (f->listed)
		LIST_REMOVE(f, link);
	f->listed = false;
}

static void
wake(struct import_filter *f)
{
	if (f->wake != NULL)
		event_active(f->wake, EV_TIMEOUT, 1);
}

/* ---- heads ------------------------------------------------------------- */

/* One header of interest: the first occurrence, as evhttp keeps it. */
struct hval {
	bool seen;
	size_t len;
	char v[VALUE_MAX + 1];
};

struct head {
	const char *p; /* the whole head, blank line included */
	size_t len;
	const char *method, *uri;
	size_t method_len, uri_len;
	bool http11;
	struct hval cl, te, conn, expect;
};

/* evhttp_method_may_have_body for the methods it knows. */
static bool
method_may_have_body(const char *m, size_t n)
{
	static const char *const with[] = {"POST", "PUT", "PATCH", "GET", "DELETE", "OPTIONS", "CONNECT", NULL};

	for (int i = 0; with[i] != NULL; i++)
		if (strlen(with[i]) == n && memcmp(with[i], m, n) == 0)
			return true;
	return false;
}

/* Methods the server allows (worker.c) that may carry a body: only these
 * reach the handler with their body taken away. */
static bool
method_importable(const char *m, size_t n)
{
	return method_may_have_body(m, n) && !(n == 7 && memcmp(m, "CONNECT", 7) == 0);
}

/* Appends text to a header value the way evhttp joins continuation lines. */
static bool
hval_append(struct hval *h, const char *s, size_t n, bool continuation)
{
	/* evhttp: a value loses its leading spaces and trailing blanks; a
	 * continuation line its leading and trailing blanks, and joins with one
	 * space */
	while (n > 0 && (*s == ' ' || (continuation && *s == '\t'))) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	if (h->len + (continuation ? 1 : 0) + n > VALUE_MAX)
		return false;
	if (continuation)
		h->v[h->len++] = ' ';
	memcpy(h->v + h->len, s, n);
	h->len += n;
	h->v[h->len] = '\0';
	return true;
}

static bool
name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* The next line of [p, end): its length without the line end, and where
 * the following line starts. */
static const char *
next_line(const char *p, const char *end, size_t *len)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t n = (size_t)(nl - p);

	if (n > 0 && p[n - 1] == '\r')
		n--;
	*len = n;
	return nl + 1;
}

/*
 * Splits a complete head as evhttp reads it. false when evhttp would reject
 * it (or the filter cannot be sure how evhttp reads it).
 */
static bool
head_parse(struct head *h)
{
	const char *end = h->p + h->len, *line = h->p, *next, *sp, *last;
	struct hval *cur = NULL;
	size_t n;

	next = next_line(line, end, &n);
	/* evhttp drops trailing spaces, then: method SP uri SP version */
	while (n > 0 && line[n - 1] == ' ')
		n--;
	sp = memchr(line, ' ', n);
	if (sp == NULL)
		return false;
	last = line + n;
	while (last > sp && last[-1] != ' ')
		last--;
	if (last - 1 == sp) /* uri empty or no version */
		return false;
	h->method = line;
	h->method_len = (size_t)(sp - line);
	h->uri = sp + 1;
	h->uri_len = (size_t)(last - 1 - (sp + 1));
	h->http11 = (size_t)(line + n - last) == 8 && memcmp(last, "HTTP/1.1", 8) == 0;
	for (line = next; line < end; line = next) {
		const char *colon;
		bool keep = true;

		next = next_line(line, end, &n);
		if (n == 0)
			break;
		if (*line == ' ' || *line == '\t') {
			if (cur != NULL)
				keep = hval_append(cur, line, n, true);
			if (!keep)
				return false;
			continue;
		}
		colon = memchr(line, ':', n);
		if (colon == NULL)
			return false;
		cur = NULL;
		if (name_is(line, (size_t)(colon - line), "Content-Length"))
			cur = &h->cl;
		else if (name_is(line, (size_t)(colon - line), "Transfer-Encoding"))
			cur = &h->te;
		else if (name_is(line, (size_t)(colon - line), "Connection"))
			cur = &h->conn;
		else if (name_is(line, (size_t)(colon - line), "Expect"))
			cur = &h->expect;
		if (cur != NULL && cur->seen) {
			cur = NULL; /* evhttp_find_header: the first one counts */
		} else if (cur != NULL) {
			cur->seen = true;
			if (!hval_append(cur, colon + 1, (size_t)(line + n - (colon + 1)), false))
				return false;
		}
	}
	return true;
}

/*
 * The body framing evhttp gives this head (evhttp_get_body): 0 none, 1
 * Content-Length (*len), 2 chunked; -1 when evhttp would fail the request.
 */
static int
head_framing(const struct head *h, int64_t *len)
{
	char *endp;
	long long v;

	*len = 0;
	if (!method_may_have_body(h->method, h->method_len))
		return 0;
	if (h->te.seen && strcasecmp(h->te.v, "chunked") == 0)
		return 2;
	/* no Content-Length: an incoming request has no body, whatever the
	 * Connection header says */
	if (!h->cl.seen)
		return 0;
	v = strtoll(h->cl.v, &endp, 10);
	if (h->cl.v[0] == '\0' || *endp != '\0' || v < 0)
		return -1;
	*len = v;
	return v > 0 ? 1 : 0;
}

/* The path of the request target is exactly /import (as evhttp_uri_get_path
 * gives it to the router). */
static bool
head_is_import(const struct head *h)
{
	struct evhttp_uri *u;
	const char *path;
	char buf[2048];
	bool yes;

	if (!method_importable(h->method, h->method_len) || h->uri_len >= sizeof(buf) ||
	    memmem(h->uri, h->uri_len, "/import", 7) == NULL)
		return false;
	memcpy(buf, h->uri, h->uri_len);
	buf[h->uri_len] = '\0';
	u = evhttp_uri_parse_with_flags(buf, EVHTTP_URI_NONCONFORMANT);
	if (u == NULL)
		return false;
	path = evhttp_uri_get_path(u);
	yes = path != NULL && strcmp(path, "/import") == 0;
	evhttp_uri_free(u);
	return yes;
}

/* The head without its body framing, for evhttp. */
static void
head_rewrite(const struct head *h, struct evbuffer *dst)
{
	const char *end = h->p + h->len, *line, *next;
	bool skipping = false;
	size_t n;

	next = next_line(h->p, end, &n);
	evbuffer_add(dst, h->p, (size_t)(next - h->p));
	for (line = next; line < end; line = next) {
		const char *colon;
		size_t klen;

		next = next_line(line, end, &n);
		if (n == 0)
			break;
		if (*line == ' ' || *line == '\t') {
			if (!skipping)
				evbuffer_add(dst, line, (size_t)(next - line));
			continue;
		}
		colon = memchr(line, ':', n);
		klen = colon != NULL ? (size_t)(colon - line) : n;
		skipping = name_is(line, klen, "Content-Length") || name_is(line, klen, "Transfer-Encoding") ||
		           name_is(line, klen, "Expect");
		if (!skipping)
			evbuffer_add(dst, line, (size_t)(next - line));
	}
	evbuffer_add(dst, "Content-Length: 0\r\n\r\n", 21);
}

/* Where the head at the start of src ends (its length), 0 when it is not
 * complete yet, -1 when it is longer than any head evhttp takes. */
static long
head_end(struct import_filter *f, struct evbuffer *src, const char **start)
{
	size_t avail = evbuffer_get_length(src), want = avail < HEAD_MAX ? avail : HEAD_MAX, from;
	struct evbuffer_iovec v;
	const char *p;

	/* usually the whole head is in the first chain: no copy */
	if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
		return 0;
	if (v.iov_len < want)
		v.iov_base = evbuffer_pullup(src, (ev_ssize_t)want);
	else
		want = v.iov_len < HEAD_MAX ? v.iov_len : HEAD_MAX;
	p = v.iov_base;
	if (p == NULL)
		return 0;
	*start = p;
	from = f->scanned > 2 ? f->scanned - 2 : 0;
	for (const char *nl = memchr(p + from, '\n', want - from); nl != NULL;
	     nl = memchr(nl + 1, '\n', want - (size_t)(nl + 1 - p))) {
		size_t i = (size_t)(nl - p);

		/* a blank line: "\n\n" or "\n\r\n" (not the first line: evhttp
		 * would take an empty request line as a bad request) */
		if (i + 1 < want && p[i + 1] == '\n')
			return (long)i + 2;
		if (i + 2 < want && p[i + 1] == '\r' && p[i + 2] == '\n')
			return (long)i + 3;
		if (i + 1 >= want)
			break;
	}
	f->scanned = want;
	return want >= HEAD_MAX ? -1 : 0;
}

/* A request head is at the start of src: pass it on and set up for its
 * body. false when more input is needed. */
static bool
on_head(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst)
{
	struct head h;
	const char *p = NULL;
	long len = head_end(f, src, &p);
	int framing;
	int64_t blen;

	if (len == 0)
		return false;
	f->scanned = 0;
	if (len < 0) {
		f->st = S_PIPE;
		return true;
	}
	memset(&h, 0, sizeof(h));
	h.p = p;
	h.len = (size_t)len;
	if (!head_parse(&h) || (framing = head_framing(&h, &blen)) < 0) {
		f->st = S_PIPE;
		return true;
	}
	if (!head_is_import(&h)) {
		evbuffer_remove_buffer(src, dst, (size_t)len);
		f->st = framing == 0 ? S_HEAD : framing == 1 ? S_BODY : S_CHUNK_SIZE;
		f->left = blen;
		f->taker = T_NONE;
		return true;
	}
	head_rewrite(&h, dst);
	evbuffer_drain(src, (size_t)len);
	f->taker = T_PENDING;
	f->ended = framing == 0;
	f->broken = false;
	f->expect = framing != 0 && h.http11 && h.expect.seen && strcasecmp(h.expect.v, "100-continue") == 0;
	f->st = framing == 0 ? S_HOLD : framing == 1 ? S_BODY : S_CHUNK_SIZE;
	f->left = blen;
	if (f->body != NULL)
		evbuffer_drain(f->body, evbuffer_get_length(f->body));
	if (!f->listed && f->bev != NULL) {
		LIST_INSERT_HEAD(&pending, f, link);
		f->listed = true;
	}
	return true;
}

/* ---- bodies ---------------------------------------------------------------- */

/* The body (of either kind) is complete. */
static void
body_end(struct import_filter *f)
{
	if (f->taker == T_NONE || f->taker == T_DISCARD) {
		f->taker = T_NONE;
		f->st = S_HEAD;
		return;
	}
	f->ended = true;
	f->st = S_HOLD;
	wake(f);
}

/* The body's framing broke: evhttp gets the rest (and rejects it). */
static void
body_broken(struct import_filter *f)
{
	if (f->taker == T_IMPORT || f->taker == T_PENDING) {
		f->broken = true;
		wake(f);
	}
	f->st = S_PIPE;
}

/* Moves up to n body bytes from src to whoever takes them; how many. */
static size_t
body_bytes(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst, size_t n)
{
	size_t have;

	switch (f->taker) {
	case T_NONE:
		return (size_t)evbuffer_remove_buffer(src, dst, n);
	case T_DISCARD:
		evbuffer_drain(src, n);
		return n;
	case T_IMPORT:
		have = evbuffer_get_length(f->body);
		if (have >= IMPORT_FILTER_BUF) {
			f->starved = true;
			return 0;
		}
		if (n > IMPORT_FILTER_BUF - have)
			n = IMPORT_FILTER_BUF - have;
		n = (size_t)evbuffer_remove_buffer(src, f->body, n);
		wake(f);
		return n;
	default:
		return 0;
	}
}

/* A framing line (chunk size, trailer) at the start of src into buf; its
 * length, -1 when incomplete, -2 when too long. The line stays in src. */
static long
framing_line(struct evbuffer *src, char *buf, size_t cap)
{
	struct evbuffer_ptr e = evbuffer_search_eol(src, NULL, NULL, EVBUFFER_EOL_LF);
	size_t n;

	if (e.pos < 0)
		return evbuffer_get_length(src) >= cap ? -2 : -1;
	n = (size_t)e.pos;
	if (n >= cap)
		return -2;
	evbuffer_copyout(src, buf, n);
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return (long)e.pos + 1;
}

/* Takes a framing line of len bytes off src (to evhttp or away). */
static void
framing_pass(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst, size_t len)
{
	if (f->taker == T_NONE)
		evbuffer_remove_buffer(src, dst, len);
	else
		evbuffer_drain(src, len);
}

/* One step on the body; false when no progress can be made now. */
static bool
on_body(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst)
{
	char line[LINE_MAX_CHUNK + 1];
	long len;
	size_t n;

	if (f->taker == T_PENDING)
		return false; /* the handler has not taken it yet */
	switch (f->st) {
	case S_BODY:
	case S_CHUNK_DATA:
		n = evbuffer_get_length(src);
		if ((int64_t)n > f->left)
			n = (size_t)f->left;
		n = body_bytes(f, src, dst, n);
		if (n == 0)
			return false;
		f->left -= (int64_t)n;
		if (f->left == 0) {
			if (f->st == S_BODY)
				body_end(f);
			else
				f->st = S_CHUNK_SIZE;
		}
		return true;
	case S_CHUNK_SIZE: {
		char *endp;
		long long size;

		len = framing_line(src, line, sizeof(line));
		if (len == -1)
			return false;
		if (len == -2) {
			body_broken(f);
			return true;
		}
		if (line[0] == '\0') { /* the end of the previous chunk's data */
			framing_pass(f, src, dst, (size_t)len);
			return true;
		}
		/* as evhttp: strtoll base 16, then nothing or a space */
		size = strtoll(line, &endp, 16);
		if ((*endp != '\0' && *endp != ' ') || size < 0) {
			body_broken(f);
			return true;
		}
		framing_pass(f, src, dst, (size_t)len);
		f->left = size;
		f->st = size == 0 ? S_TRAILER : S_CHUNK_DATA;
		return true;
	}
	case S_TRAILER:
		len = framing_line(src, line, sizeof(line));
		if (len == -1)
			return false;
		if (len == -2) {
			body_broken(f);
			return true;
		}
		framing_pass(f, src, dst, (size_t)len);
		if (line[0] == '\0')
			body_end(f);
		return true;
	default:
		return false;
	}
}

/* The input filter. */
static enum bufferevent_filter_result
filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode, void *ctx)
{
	struct import_filter *f = ctx;
	bool moved = false;

	(void)limit;
	(void)mode;
	while (evbuffer_get_length(src) > 0) {
		bool ok;

		switch (f->st) {
		case S_PIPE:
			evbuffer_add_buffer(dst, src);
			return BEV_OK;
		case S_HOLD:
			ok = false;
			break;
		case S_HEAD:
			ok = on_head(f, src, dst);
			break;
		default:
			ok = on_body(f, src, dst);
			break;
		}
		if (!ok)
			break;
		moved = true;
	}
	/* BEV_OK makes libevent call again while input remains: only after
	 * progress */
	return moved ? BEV_OK : BEV_NEED_MORE;
}

/* ---- output ------------------------------------------------------------------ */

/* The output filter: straight to the socket (see the top of the file). */
static enum bufferevent_filter_result
filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode, void *ctx)
{
	struct import_filter *f = ctx;
	evutil_socket_t fd = bufferevent_getfd(f->under);
	int n;

	(void)limit;
	(void)mode;
	if (fd < 0) {
		evbuffer_add_buffer(dst, src);
		return BEV_OK;
	}
	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	n = evbuffer_write(src, fd);
	if (n > 0) {
		/* called back once the socket can take more */
		if (evbuffer_get_length(src) > 0)
			bufferevent_enable(f->under, EV_WRITE);
		else
			event_active(f->idle, EV_TIMEOUT, 1);
		return BEV_OK;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		bufferevent_enable(f->under, EV_WRITE);
		return BEV_NEED_MORE;
	}
	/* the peer is gone: evhttp learns it as from a socket bufferevent */
	bufferevent_trigger_event(f->bev, BEV_EVENT_ERROR | BEV_EVENT_WRITING, BEV_TRIG_DEFER_CALLBACKS);
	return BEV_ERROR;
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct import_filter *f = arg;

	(void)fd;
	(void)what;
	if (bufferevent_get_enabled(f->bev) & EV_WRITE)
		bufferevent_flush(f->bev, EV_WRITE, BEV_NORMAL);
}

/* After libevent re-armed the write timeout for the last write. */
static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct import_filter *f = arg;

	(void)fd;
	(void)what;
	if (evbuffer_get_length(bufferevent_get_output(f->bev)) == 0)
		event_del(&f->bev->ev_write);
}

/* Output added while evhttp has writing disabled: evhttp enables it right
 * after, and nothing in the filter sends what is already there. */
static void
on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct import_filter *f = arg;

	(void)buf;
	if (info->n_added > 0 && !(bufferevent_get_enabled(f->bev) & EV_WRITE))
		event_active(f->flush, EV_TIMEOUT, 1);
}

/* ---- life cycle ------------------------------------------------------------ */

static void
filter_free(void *ctx)
{
	struct import_filter *f = ctx;

	if (f->magic != FILTER_MAGIC)
		abort();
	unlist(f);
	if (f->owner != NULL)
		*f->owner = NULL;
	wake(f);
	if (f->out_cb != NULL && f->bev != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(f->bev), f->out_cb);
	if (f->flush != NULL)
		event_free(f->flush);
	if (f->idle != NULL)
		event_free(f->idle);
	if (f->body != NULL)
		evbuffer_free(f->body);
	f->magic = 0;
	free(f);
}

struct bufferevent *
import_filter_bevcb(struct event_base *base, void *arg)
{
	struct import_filter *f = calloc(1, sizeof(*f));
	struct bufferevent *under = NULL;

	(void)arg;
	if (f == NULL || (f->body = evbuffer_new()) == NULL ||
	    (f->flush = event_new(base, -1, 0, on_flush, f)) == NULL ||
	    (f->idle = event_new(base, -1, 0, on_idle, f)) == NULL)
		goto fail;
	f->magic = FILTER_MAGIC;
	f->st = S_HEAD;
	under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (under == NULL)
		goto fail;
	bufferevent_setwatermark(under, EV_READ, 0, UNDER_READ_HIGH);
	f->under = under;
	f->bev = bufferevent_filter_new(under, filter_in, filter_out, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
	                                filter_free, f);
	if (f->bev == NULL)
		goto fail;
	f->out_cb = evbuffer_add_cb(bufferevent_get_output(f->bev), on_output, f);
	if (f->out_cb == NULL) {
		bufferevent_free(f->bev); /* frees f and under */
		return NULL;
	}
	return f->bev;
fail:
	log_error("import: cannot set up a connection filter: out of memory");
	if (under != NULL)
		bufferevent_free(under);
	if (f != NULL && f->body != NULL)
		evbuffer_free(f->body);
	if (f != NULL && f->flush != NULL)
		event_free(f->flush);
	if (f != NULL && f->idle != NULL)
		event_free(f->idle);
	free(f);
	/* evhttp makes a plain socket bufferevent itself */
	return NULL;
}

struct import_filter *
import_filter_claim(struct evhttp_request *req, struct import_filter **owner, struct event *wakeev)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
	struct import_filter *f;

	if (bev == NULL)
		return NULL;
	LIST_FOREACH(f, &pending, link)
	{
		if (f->bev == bev && f->taker == T_PENDING) {
			unlist(f);
			f->owner = owner;
			f->wake = wakeev;
			return f;
		}
	}
	return NULL;
}

bool
import_filter_expecting(const struct import_filter *f)
{
	return f->expect;
}

/* Lets the socket's buffered input through the filter again (from the
 * event loop: libevent does not run the filter for bytes it already has). */
static void
kick(struct import_filter *f)
{
	if (f->under != NULL && evbuffer_get_length(bufferevent_get_input(f->under)) > 0)
		bufferevent_trigger(f->under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
import_filter_accept(struct import_filter *f)
{
	if (f->taker != T_PENDING)
		return;
	f->taker = T_IMPORT;
	if (f->expect && f->bev != NULL) {
		/* ahead of the response evhttp is about to start */
		bufferevent_write(f->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	f->expect = false;
	if (f->ended)
		wake(f);
	kick(f);
}

struct evbuffer *
import_filter_body(struct import_filter *f)
{
	return f->body;
}

bool
import_filter_ended(const struct import_filter *f)
{
	return f->ended;
}

bool
import_filter_broken(const struct import_filter *f)
{
	return f->broken;
}

void
import_filter_more(struct import_filter *f)
{
	if (f->starved && evbuffer_get_length(f->body) < IMPORT_FILTER_BUF / 2) {
		f->starved = false;
		kick(f);
	}
}

void
import_filter_release(struct import_filter *f)
{
	unlist(f);
	f->owner = NULL;
	f->wake = NULL;
	f->starved = false;
	f->expect = false;
	evbuffer_drain(f->body, evbuffer_get_length(f->body));
	if (f->st == S_HOLD) {
		/* body complete: on to the next request */
		f->st = S_HEAD;
		f->taker = T_NONE;
	} else if (f->taker != T_NONE) {
		f->taker = T_DISCARD;
	}
	f->ended = false;
	kick(f);
}

/* ---- tests ------------------------------------------------------------------- */

struct import_filter *
import_filter_new_detached(void)
{
	struct import_filter *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->magic = FILTER_MAGIC;
	f->st = S_HEAD;
	f->body = evbuffer_new();
	if (f->body == NULL) {
		free(f);
		return NULL;
	}
	return f;
}

void
import_filter_free_detached(struct import_filter *f)
{
	filter_free(f);
}

int
import_filter_feed(struct import_filter *f, struct evbuffer *src, struct evbuffer *dst)
{
	return filter_in(src, dst, -1, BEV_NORMAL, f) == BEV_OK ? 1 : 0;
}

bool
import_filter_diverting(const struct import_filter *f)
{
	return f->taker == T_PENDING || f->taker == T_IMPORT;
}
