/*
 * POST /import (SPEC 7.1 with D8 and D17): NDJSON records in, SSE-formatted
 * events out, in constant memory.
 *
 * The body arrives through the connection filter (import_filter.c) as it is
 * sent; without one (never in practice) it is the request's input buffer.
 * Lines are parsed and validated one by one into a batch of up to
 * STORE_IMPORT_MAX records (or IMPORT_BATCH_BYTES of record text, so a
 * batch of large records stays small). A full batch goes to the store as
 * one transaction; while it is there the next one is filled, so parsing and
 * the database overlap. Two batches are the most an import holds; when both
 * are full it stops reading lines, the filter's buffer fills, and the
 * client is held back by TCP. Each committed batch is reported at once
 * (progress), the last one with done; the first failure ends the import
 * with an error event (HTTP 200, as the reference). A store call never
 * blocks the event loop, so the worker serves other requests meanwhile.
 *
 * Imports do not poke subscribers (SPEC 6.4): like the reference, the
 * imported messages are history, seen by catch-up reads only.
 */
#include "autoconf.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "evlib.h"
#include "http.h"
#include "import.h"
#include "jsonnum.h"
#include "jsonw.h"
#include "log.h"
#include "ring.h"
#include "shm.h"
#include "store.h"
#include "worker.h"

#define IMPORT_MAGIC 0x494d5054u      /* "IMPT" */
#define IMPORT_LINE_MAX (1024 * 1024) /* the reference's bufio.Scanner limit */
#define IMPORT_BATCH_BYTES (4 * 1024 * 1024)
#define IMPORT_NAME_MAX 1024 /* stream and type, as everywhere (D14) */

struct batch {
	struct store_import_rec recs[STORE_IMPORT_MAX];
	size_t n;
	/* the records' strings; until sealed, recs hold offset + 1 */
	char *arena;
	size_t alen, acap;
	int64_t last_line; /* line of the last record read */
	bool ready;        /* sealed: waiting for, or in, the store */
	bool progress;     /* a progress event follows its commit */
};

struct import {
	uint32_t magic;
	struct worker *w;
	struct evhttp_request *req;
	struct evhttp_connection *conn; /* while our close callback is set */
	struct import_filter *f;        /* NULL once the filter let go */
	bool filtered;                  /* the body comes through f */
	struct evbuffer *src;
	struct event *ev;
	struct event *ka; /* keepalive comments while the import runs */
	struct evbuffer *out;
	int64_t start_us, t0_us;
	char ns[64];
	bool force;
	int64_t line, imported, last_gpos;
	struct batch *b[2];
	int fill;   /* batch being filled */
	int flying; /* batch in the store, -1 none */
	bool busy;  /* a store call is in flight */
	bool streaming, gone, finished, eof, counted;
	/* a terminal error found while a batch was in the store */
	bool err;
	const char *err_code;
	int64_t err_line;
	char err_msg[600];
};

static void process(struct import *imp);

/* ---- life cycle ----------------------------------------------------------- */

static void
batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	free(b->arena);
	free(b);
}

static void
imp_free(struct import *imp)
{
	if (imp->magic != IMPORT_MAGIC)
		abort();
	if (imp->f != NULL)
		import_filter_release(imp->f);
	imp->f = NULL;
	if (imp->conn != NULL)
		evhttp_connection_set_closecb(imp->conn, NULL, NULL);
	if (imp->counted)
		imp->w->me->st.requests_in_flight--;
	if (imp->ev != NULL)
		event_free(imp->ev);
	if (imp->ka != NULL)
		event_free(imp->ka);
	if (imp->out != NULL)
		evbuffer_free(imp->out);
	batch_free(imp->b[0]);
	batch_free(imp->b[1]);
	imp->magic = 0;
	free(imp);
}

/* Frees imp unless a store call still refers to it (its callback frees it). */
static void
imp_done(struct import *imp)
{
	if (!imp->busy)
		imp_free(imp);
}

/* The connection is going away (client gone, error, timeout, worker exit). */
static void
on_close(struct evhttp_connection *evcon, void *arg)
{
	struct import *imp = arg;

	(void)evcon;
	imp->conn = NULL;
	imp->gone = true;
	/* libevent detached an unfinished response: the request is ours to
	 * free; otherwise it goes with the connection */
	if (imp->req != NULL && imp->streaming && !imp->finished && evhttp_request_get_connection(imp->req) == NULL)
		evhttp_send_reply_end(imp->req);
	imp->req = NULL;
	if (imp->f != NULL)
		import_filter_release(imp->f);
	imp->f = NULL;
	if (!imp->finished)
		log_info("import aborted: client gone namespace=%s imported=%lld", imp->ns, (long long)imp->imported);
	imp->finished = true;
	imp_done(imp);
}

static void emit(struct import *imp);

/* A comment line now and then: a client that sends slowly gets no event for
 * a long time, and the connection's write timeout (and proxies) must not
 * take that for a dead peer. */
static void
on_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct import *imp = arg;

	(void)fd;
	(void)what;
	if (imp->finished || imp->gone)
		return;
	jw_lit(imp->out, ": keepalive\n\n");
	emit(imp);
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	process(arg);
}

/* Ends the response (the terminal event is out) and lets the body go. */
static void
finish(struct import *imp)
{
	if (imp->finished)
		return;
	imp->finished = true;
	if (imp->ka != NULL)
		event_del(imp->ka);
	if (imp->conn != NULL)
		evhttp_connection_set_closecb(imp->conn, NULL, NULL);
	imp->conn = NULL;
	if (imp->req != NULL)
		evhttp_send_reply_end(imp->req);
	imp->req = NULL;
	if (imp->f != NULL)
		import_filter_release(imp->f);
	imp->f = NULL;
}

/* ---- events ----------------------------------------------------------------- */

static void
emit(struct import *imp)
{
	if (imp->req != NULL && !imp->gone)
		evhttp_send_reply_chunk(imp->req, imp->out);
	evbuffer_drain(imp->out, evbuffer_get_length(imp->out));
}

static void
emit_progress(struct import *imp)
{
	jw_lit(imp->out, "data: {\"imported\":");
	jw_i64(imp->out, imp->imported);
	jw_lit(imp->out, ",\"gpos\":");
	jw_i64(imp->out, imp->last_gpos);
	jw_lit(imp->out, "}\n\n");
	emit(imp);
}

static void
emit_done(struct import *imp)
{
	double secs = (double)(now_unix_us() - imp->t0_us) / 1e6;
	char elapsed[32];

	snprintf(elapsed, sizeof(elapsed), "%.1fs", secs);
	jw_lit(imp->out, "data: {\"done\":true,\"imported\":");
	jw_i64(imp->out, imp->imported);
	jw_lit(imp->out, ",\"elapsed\":");
	jw_cstr(imp->out, elapsed);
	jw_lit(imp->out, "}\n\n");
	emit(imp);
	log_info("import done namespace=%s imported=%lld elapsed=%s", imp->ns, (long long)imp->imported, elapsed);
}

static void
emit_error(struct import *imp, const char *code, const char *msg, int64_t line)
{
	jw_lit(imp->out, "data: {\"error\":");
	jw_cstr(imp->out, code);
	jw_lit(imp->out, ",\"message\":");
	jw_cstr(imp->out, msg);
	if (line > 0) {
		jw_lit(imp->out, ",\"line\":");
		jw_i64(imp->out, line);
	}
	jw_lit(imp->out, "}\n\n");
	emit(imp);
	log_info("import failed namespace=%s imported=%lld error=%s line=%lld: %s", imp->ns, (long long)imp->imported,
	         code, (long long)line, msg);
}

/* Notes the import's terminal error; it is sent once no batch is in the store. */
static void fail(struct import *imp, const char *code, int64_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
fail(struct import *imp, const char *code, int64_t line, const char *fmt, ...)
{
	va_list ap;

	if (imp->err)
		return;
	imp->err = true;
	imp->err_code = code;
	imp->err_line = line;
	va_start(ap, fmt); /* cut on a character boundary: client text */
	utf8_vsnprintf(imp->err_msg, sizeof(imp->err_msg), fmt, ap);
	va_end(ap);
}

/* ---- records ---------------------------------------------------------------- */

static struct batch *
batch_cur(struct import *imp)
{
	struct batch **bp = &imp->b[imp->fill];

	if (*bp == NULL)
		*bp = calloc(1, sizeof(**bp));
	return *bp;
}

/* Copies s into the batch's arena; offset + 1 (0 when out of memory). */
static uintptr_t
arena_put(struct batch *b, const char *s, size_t n)
{
	uintptr_t off;

	if (b->alen + n + 1 > b->acap) {
		size_t cap = b->acap ? b->acap : 64 * 1024;
		char *a;

		while (cap < b->alen + n + 1)
			cap *= 2;
		if ((a = realloc(b->arena, cap)) == NULL)
			return 0;
		b->arena = a;
		b->acap = cap;
	}
	off = b->alen;
	memcpy(b->arena + off, s, n);
	b->arena[off + n] = '\0';
	b->alen += n + 1;
	return off + 1;
}

static const char *
arena_ptr(const struct batch *b, const char *p)
{
	uintptr_t v = (uintptr_t)p;

	return v == 0 ? NULL : b->arena + (v - 1);
}

/* The batch is complete: its record pointers become real. */
static void
batch_seal(struct batch *b, bool progress)
{
	for (size_t i = 0; i < b->n; i++) {
		struct store_import_rec *r = &b->recs[i];

		r->id = arena_ptr(b, r->id);
		r->stream = arena_ptr(b, r->stream);
		r->type = arena_ptr(b, r->type);
		r->data = arena_ptr(b, r->data);
		r->metadata = arena_ptr(b, r->metadata);
	}
	b->ready = true;
	b->progress = progress;
}

static void
batch_reset(struct batch *b)
{
	if (b == NULL)
		return;
	b->n = 0;
	b->alen = 0;
	b->ready = false;
	b->progress = false;
	/* one batch of huge records must not pin its arena */
	if (b->acap > 2 * IMPORT_BATCH_BYTES) {
		free(b->arena);
		b->arena = NULL;
		b->acap = 0;
	}
}

/* A \u0000 escape outside an escaped backslash (see rpc.c). */
static bool
has_nul_escape(const char *s, size_t len)
{
	for (size_t i = 0; i + 5 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++;
	}
	return false;
}

static bool
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\v' && s[i] != '\f')
			return false;
	return true;
}

static const char *
name_field(json_object *rec, const char *key, size_t *len)
{
	json_object *o;

	if (!json_object_object_get_ex(rec, key, &o) || !json_object_is_type(o, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(o);
	if (*len < 1 || *len > IMPORT_NAME_MAX)
		return NULL;
	return json_object_get_string(o);
}

/* An integer field at least min; false when absent, not an integer or out of range. */
static bool
int_field(json_object *rec, const char *key, int64_t min, int64_t *v)
{
	json_object *o;

	if (!json_object_object_get_ex(rec, key, &o) || !json_object_is_type(o, json_type_int))
		return false;
	*v = json_object_get_int64(o);
	/* json-c keeps integers above INT64_MAX as uint64 */
	if (*v == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
		return false;
	return *v >= min;
}

static const char *
json_text(json_object *o, size_t *len)
{
	const char *s =
	    json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);

	return s;
}

/*
 * One non-blank line: parsed, validated (D17) and added to the current
 * batch. false (with the error noted) when the import must stop.
 */
static bool
take_line(struct import *imp, const char *p, size_t n)
{
	struct json_tokener *tok = imp->w->tok;
	enum json_tokener_error jerr;
	json_object *rec, *o;
	struct batch *b;
	struct store_import_rec *r;
	const char *id, *stream, *type, *tstr, *data, *meta = NULL;
	size_t idlen, slen, tlen, tslen, dlen, mlen = 0;
	char uuid[UUID_STRLEN + 1];
	int64_t pos, gpos, t_us;
	int64_t L = imp->line;
	bool ok = false;
	char *wide = NULL;
	size_t big;

	if (!utf8_valid(p, n)) {
		fail(imp, "INVALID_RECORD", L, "invalid record at line %lld: not valid UTF-8", (long long)L);
		return false;
	}
	if ((big = jsonnum_bigints(p, n)) > 0) {
		/* integers beyond 64 bits stay numbers, as doubles */
		if ((wide = malloc(n + 2 * big + 1)) == NULL) {
			fail(imp, "IMPORT_FAILED", L, "out of memory");
			return false;
		}
		n = jsonnum_widen(p, n, wide);
		p = wide;
	}
	json_tokener_reset(tok);
	rec = json_tokener_parse_ex(tok, p, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* a value that ends with the input ("5", "nul"): flush */
		rec = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
	} else if (jerr == json_tokener_success &&
	           !blank(p + json_tokener_get_parse_end(tok), n - json_tokener_get_parse_end(tok))) {
		json_object_put(rec);
		rec = NULL;
		jerr = json_tokener_error_parse_unexpected;
	}
	if (jerr == json_tokener_error_depth) {
		fail(imp, "INVALID_RECORD", L, "invalid record at line %lld: nested deeper than 64 levels",
		     (long long)L);
		goto out;
	}
	if (jerr != json_tokener_success) {
		fail(imp, "INVALID_JSON", L, "malformed JSON at line %lld: %s", (long long)L,
		     json_tokener_error_desc(jerr));
		goto out;
	}
	if (rec != NULL && !json_object_is_type(rec, json_type_object)) {
		fail(imp, "INVALID_JSON", L, "malformed JSON at line %lld: a record must be a JSON object",
		     (long long)L);
		goto out;
	}
	if (has_nul_escape(p, n)) {
		fail(imp, "INVALID_RECORD", L, "invalid record at line %lld: strings must not contain \\u0000",
		     (long long)L);
		goto out;
	}
	/* (null is the zero record of the reference: it fails below) */
#define BAD(...)                                                                                                       \
	do {                                                                                                           \
		char why_[256];                                                                                        \
		utf8_snprintf(why_, sizeof(why_), __VA_ARGS__);                                                        \
		fail(imp, "INVALID_RECORD", L, "invalid record at line %lld: %s", (long long)L, why_);                 \
		goto out;                                                                                              \
	} while (0)
	if (rec == NULL || !json_object_object_get_ex(rec, "id", &o) || !json_object_is_type(o, json_type_string) ||
	    uuid_canonical(json_object_get_string(o), (size_t)json_object_get_string_len(o), uuid) != 0)
		BAD("id must be a UUID");
	id = uuid;
	idlen = UUID_STRLEN;
	if ((stream = name_field(rec, "stream", &slen)) == NULL)
		BAD("stream must be a non-empty string of at most %d bytes", IMPORT_NAME_MAX);
	if ((type = name_field(rec, "type", &tlen)) == NULL)
		BAD("type must be a non-empty string of at most %d bytes", IMPORT_NAME_MAX);
	if (!int_field(rec, "pos", 0, &pos))
		BAD("pos must be a non-negative integer");
	if (!int_field(rec, "gpos", 1, &gpos))
		BAD("gpos must be an integer of at least 1");
	if (!json_object_object_get_ex(rec, "data", &o) || !json_object_is_type(o, json_type_object))
		BAD("data must be an object");
	data = json_text(o, &dlen);
	if (json_object_object_get_ex(rec, "meta", &o) && o != NULL) {
		if (!json_object_is_type(o, json_type_object))
			BAD("meta must be an object or null");
		meta = json_text(o, &mlen);
	}
	if (!json_object_object_get_ex(rec, "time", &o) || !json_object_is_type(o, json_type_string))
		BAD("invalid time format: time must be an RFC 3339 string");
	tstr = json_object_get_string(o);
	tslen = (size_t)json_object_get_string_len(o);
	if (rfc3339_parse(tstr, tslen, false, &t_us) != 0)
		BAD("invalid time format: parsing time \"%.*s\" as RFC 3339 failed", (int)utf8_prefix(tstr, tslen, 64),
		    tstr);
#undef BAD
	if ((b = batch_cur(imp)) == NULL)
		goto oom;
	r = &b->recs[b->n];
	memset(r, 0, sizeof(*r));
	r->position = pos;
	r->global_position = gpos;
	r->time_us = t_us;
	if ((r->id = (const char *)arena_put(b, id, idlen)) == NULL ||
	    (r->stream = (const char *)arena_put(b, stream, slen)) == NULL ||
	    (r->type = (const char *)arena_put(b, type, tlen)) == NULL ||
	    (r->data = (const char *)arena_put(b, data, dlen)) == NULL ||
	    (meta != NULL && (r->metadata = (const char *)arena_put(b, meta, mlen)) == NULL))
		goto oom;
	b->n++;
	b->last_line = L;
	ok = true;
	goto out;
oom:
	fail(imp, "IMPORT_FAILED", L, "out of memory");
out:
	json_object_put(rec);
	free(wide);
	return ok;
}

/* ---- batches in the store -------------------------------------------------- */

static void batch_done(const struct store_reply *r, void *arg);

/* Sends the sealed current batch to the store if none is there. */
static void
submit(struct import *imp)
{
	struct batch *b = imp->b[imp->fill];
	int i = imp->fill;

	if (imp->flying >= 0 || b == NULL || !b->ready)
		return;
	if (imp->w->store->ops->import(imp->w->store, imp->ns, b->recs, b->n, batch_done, imp) != 0) {
		fail(imp, "IMPORT_FAILED", b->last_line,
		     "Database unavailable: no connection, or too many requests waiting");
		batch_reset(b);
		return;
	}
	imp->busy = true;
	imp->flying = i;
	imp->fill = 1 - i;
	batch_reset(imp->b[imp->fill]);
}

static void
batch_done(const struct store_reply *r, void *arg)
{
	struct import *imp = arg;
	struct batch *b = imp->b[imp->flying];

	imp->busy = false;
	imp->flying = -1;
	if (imp->gone || imp->finished) {
		imp_done(imp);
		return;
	}
	if (r->status == ST_OK) {
		imp->imported += (int64_t)b->n;
		imp->last_gpos = b->recs[b->n - 1].global_position;
		if (b->progress)
			emit_progress(imp);
	} else {
		/* this batch came first: its failure wins over a later line's */
		imp->err = false;
		if (r->status == ST_POS_EXISTS && r->has_value)
			fail(imp, "POSITION_EXISTS", b->last_line, "global position already exists: %lld",
			     (long long)r->value);
		else if (r->status == ST_POS_EXISTS)
			fail(imp, "POSITION_EXISTS", b->last_line, "global position already exists");
		else
			fail(imp, "IMPORT_FAILED", b->last_line, "%s", r->error != NULL ? r->error : "import failed");
	}
	batch_reset(b);
	process(imp);
}

/* ---- the body --------------------------------------------------------------- */

/* Whether the whole body has arrived (or will not). */
static bool
body_ended(struct import *imp)
{
	return !imp->filtered || (imp->f != NULL && import_filter_ended(imp->f));
}

/* Reads lines until a batch must wait, input runs out or the import ends. */
static void
read_lines(struct import *imp)
{
	struct evbuffer *src = imp->src;

	while (!imp->err && !imp->eof) {
		struct batch *b = imp->b[imp->fill];
		struct evbuffer_ptr e;
		size_t n, take;
		const char *p;

		if (b != NULL && b->ready) {
			submit(imp);
			if (imp->b[imp->fill] != NULL && imp->b[imp->fill]->ready)
				return; /* both batches full: wait for the store */
			continue;
		}
		e = evbuffer_search_eol(src, NULL, NULL, EVBUFFER_EOL_LF);
		if (e.pos >= 0) {
			n = (size_t)e.pos;
			take = n + 1;
		} else if (!body_ended(imp)) {
			if (evbuffer_get_length(src) >= IMPORT_LINE_MAX)
				fail(imp, "READ_ERROR", imp->line,
				     "error reading input: bufio.Scanner: token too long");
			return;
		} else if ((n = evbuffer_get_length(src)) == 0) {
			imp->eof = true;
			return;
		} else {
			take = n; /* the last line, without a newline */
		}
		if (n >= IMPORT_LINE_MAX) {
			fail(imp, "READ_ERROR", imp->line, "error reading input: bufio.Scanner: token too long");
			return;
		}
		p = (const char *)evbuffer_pullup(src, (ev_ssize_t)take);
		imp->line++;
		if (p != NULL && n > 0 && p[n - 1] == '\r')
			n--;
		if (p != NULL && !blank(p, n) && take_line(imp, p, n)) {
			b = imp->b[imp->fill];
			if (b->n == STORE_IMPORT_MAX || b->alen >= IMPORT_BATCH_BYTES)
				batch_seal(b, true);
		}
		evbuffer_drain(src, take);
	}
}

/* Runs whenever something changed: more body, a batch back, the end. */
static void
process(struct import *imp)
{
	if (imp->finished || !imp->streaming)
		return;
	if (imp->filtered && imp->f == NULL) {
		/* the connection went away; on_close has run or will */
		return;
	}
	if (imp->filtered && import_filter_broken(imp->f))
		fail(imp, "READ_ERROR", imp->line, "error reading input: malformed chunked request body");
	read_lines(imp);
	if (imp->f != NULL)
		import_filter_more(imp->f);
	if (imp->flying >= 0)
		return; /* the rest waits for the batch in the store */
	if (imp->err) {
		emit_error(imp, imp->err_code, imp->err_msg, imp->err_line);
		finish(imp);
		imp_done(imp);
		return;
	}
	if (!imp->eof)
		return;
	if (imp->b[imp->fill] != NULL && imp->b[imp->fill]->n > 0) {
		/* the last, partial batch: done follows it, no progress */
		if (!imp->b[imp->fill]->ready)
			batch_seal(imp->b[imp->fill], false);
		submit(imp);
		if (imp->flying >= 0)
			return;
		process(imp); /* submit failed: report it */
		return;
	}
	emit_done(imp);
	finish(imp);
	imp_done(imp);
}

/* ---- the request ---------------------------------------------------------------- */

static void
start_stream(struct import *imp)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(imp->req);

	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "Connection", "keep-alive");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_add_header(h, "Server", HTTP_SERVER_HEADER);
	if (imp->f != NULL) {
		import_filter_accept(imp->f);
		imp->src = import_filter_body(imp->f);
	} else {
		imp->src = evhttp_request_get_input_buffer(imp->req);
	}
	imp->streaming = true;
	imp->t0_us = now_unix_us();
	evhttp_send_reply_start(imp->req, 200, "OK");
	imp->ka = event_new(imp->w->base, -1, EV_PERSIST, on_keepalive, imp);
	if (imp->ka != NULL) {
		struct timeval tv = {(time_t)imp->w->cfg->sse_keepalive, 0};
		event_add(imp->ka, &tv);
	}
	http_account(imp->w, imp->req, 200, imp->start_us);
	process(imp);
}

/* An error before the stream began: the JSON error reply (D17). */
static void
reject(struct import *imp, int status, const char *code, const char *message, const char *details)
{
	/* a client waiting for "100 Continue" may or may not send its body
	 * now: only closing the connection keeps the next request framed */
	if (imp->f != NULL && import_filter_expecting(imp->f))
		evhttp_add_header(evhttp_request_get_output_headers(imp->req), "Connection", "close");
	if (imp->conn != NULL)
		evhttp_connection_set_closecb(imp->conn, NULL, NULL);
	imp->conn = NULL;
	http_send_error(imp->w, imp->req, status, code, message, details, imp->start_us);
	imp->req = NULL;
	imp->finished = true;
	imp_done(imp);
}

static void
clear_done(const struct store_reply *r, void *arg)
{
	struct import *imp = arg;

	imp->busy = false;
	if (imp->gone) {
		imp_done(imp);
		return;
	}
	if (r->status != ST_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "Failed to clear namespace: %s", r->error ? r->error : "store error");
		reject(imp, 500, "CLEAR_FAILED", msg, NULL);
		return;
	}
	/* versions the stream index knew are gone with the messages */
	ring_index_clear(imp->w->shm);
	log_info("import: namespace cleared namespace=%s", imp->ns);
	start_stream(imp);
}

static void
begin(struct import *imp)
{
	if (!imp->force) {
		start_stream(imp);
		return;
	}
	if (imp->w->store->ops->clear(imp->w->store, imp->ns, clear_done, imp) != 0) {
		reject(imp, 503, "BACKEND_UNAVAILABLE",
		       "Database unavailable: no connection, or too many requests waiting", NULL);
		return;
	}
	imp->busy = true;
}

static void
autocreated(void *arg, const char *token, const char *error)
{
	struct import *imp = arg;

	imp->busy = false;
	if (imp->gone) {
		imp_done(imp);
		return;
	}
	if (error != NULL) {
		reject(imp, 500, "BACKEND_ERROR", error, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(imp->req), "X-EventoDB-Token", token);
	begin(imp);
}

/* ?force=true (Go's strconv.ParseBool true values). */
static bool
force_param(struct evhttp_request *req)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *v;
	struct evkeyvalq q;
	bool yes = false;

	if (query == NULL || strstr(query, "force") == NULL || evhttp_parse_query_str(query, &q) != 0)
		return false;
	v = evhttp_find_header(&q, "force");
	if (v != NULL)
		yes = strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 || strcmp(v, "T") == 0 ||
		      strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0;
	evhttp_clear_headers(&q);
	return yes;
}

void
import_handle(struct worker *w, struct evhttp_request *req, int64_t start_us)
{
	struct import *imp = calloc(1, sizeof(*imp));
	struct auth_result a;

	if (imp == NULL) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	imp->magic = IMPORT_MAGIC;
	imp->w = w;
	imp->req = req;
	imp->start_us = start_us;
	imp->flying = -1;
	imp->ev = event_new(w->base, -1, 0, on_wake, imp);
	imp->out = evbuffer_new();
	imp->f = import_filter_claim(req, &imp->f, imp->ev);
	imp->filtered = imp->f != NULL;
	if (imp->ev == NULL || imp->out == NULL) {
		reject(imp, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	auth_check(w, req, &a);
	if (a.status != 0) {
		reject(imp, a.status, a.code, a.message, a.details);
		return;
	}
	/* an authenticated namespace is in the shared table, so it fits */
	memcpy(imp->ns, a.ns, strnlen(a.ns, sizeof(imp->ns) - 1));
	imp->force = force_param(req);
	imp->counted = true;
	w->me->st.requests_in_flight++;
	/* from here on, learn of the connection going away (also before the
	 * stream starts: a store call may be in flight) */
	imp->conn = evhttp_request_get_connection(req);
	if (imp->conn != NULL)
		evhttp_connection_set_closecb(imp->conn, on_close, imp);
	if (a.autocreate) {
		/* test mode: create the token's namespace first (SPEC D2) */
		if (auth_autocreate(w, &a, autocreated, imp) != 0) {
			reject(imp, 503, "BACKEND_UNAVAILABLE",
			       "Database unavailable: no connection, or too many requests waiting", NULL);
			return;
		}
		imp->busy = true;
		return;
	}
	begin(imp);
}
