/*
 * POST /import (SPEC 7.1 with D8 and D17): NDJSON records in, SSE-formatted
 * events out, in constant memory.
 *
 * The body arrives as it is sent (the connection layer streams it to us,
 * HTTP_BODY_STREAM, and stops reading the socket while we hold our fill).
 * Lines are parsed and validated one by one into a batch of up to
 * STORE_IMPORT_MAX records (or IMPORT_BATCH_BYTES of record text, so a
 * batch of large records stays small). A full batch goes to the store as
 * one transaction; while it is there the next one is filled, so parsing and
 * the database overlap. Two batches are the most an import holds; when both
 * are full it stops reading lines, the body buffer fills, and the client
 * is held back by TCP. Each committed batch is reported at once
 * (progress), the last one with done; the first failure ends the import
 * with an error event (HTTP 200, as the reference). A store call never
 * blocks the event loop, so the worker serves other requests meanwhile.
 *
 * Imports do not poke subscribers (SPEC 6.4): like the reference, the
 * imported messages are history, seen by catch-up reads only.
 */
#include "autoconf.h"

#include <event2/event.h>
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
#include "import_record.h"
#include "jsonw.h"
#include "log.h"
#include "ring.h"
#include "shm.h"
#include "store.h"
#include "wbuf.h"
#include "worker.h"

#define IMPORT_MAGIC 0x494d5054u      /* "IMPT" */
#define IMPORT_LINE_MAX IREC_LINE_MAX
#define IMPORT_BATCH_BYTES (4 * 1024 * 1024)

struct batch {
	struct store_import_rec recs[STORE_IMPORT_MAX];
	size_t n;
	/* the records' strings; until sealed, recs hold offset + 1 */
	struct irec_arena arena;
	int64_t last_line; /* line of the last record read */
	bool ready;        /* sealed: waiting for, or in, the store */
	bool progress;     /* a progress event follows its commit */
};

struct import {
	uint32_t magic;
	struct worker *w;
	struct http_req *req; /* NULL once the request is over */
	struct event *ka;     /* keepalive comments while the import runs */
	struct wbuf out;
	int64_t start_us, t0_us;
	char ns[64];
	bool force;
	int64_t line, imported, last_gpos;
	struct batch *b[2];
	int fill;   /* batch being filled */
	int flying; /* batch in the store, -1 none */
	bool busy;  /* a store call is in flight */
	bool streaming, gone, finished, eof;
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
	irec_arena_free(&b->arena);
	free(b);
}

static void
imp_free(struct import *imp)
{
	if (imp->magic != IMPORT_MAGIC)
		abort();
	if (imp->ka != NULL)
		event_free(imp->ka);
	wb_free(&imp->out);
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

/* The connection went away (client gone, error, timeout, worker exit). */
static void
on_close(void *arg)
{
	struct import *imp = arg;

	imp->req = NULL;
	imp->gone = true;
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
	jw_lit(&imp->out, ": keepalive\n\n");
	emit(imp);
}

/* More body, or its end, or it broke. */
static void
on_body(void *arg)
{
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
	if (imp->req != NULL)
		http_stream_end(imp->req);
	imp->req = NULL;
}

/* ---- events ----------------------------------------------------------------- */

static void
emit(struct import *imp)
{
	if (imp->req != NULL && !imp->gone)
		http_stream_send(imp->req, imp->out.p, imp->out.len);
	imp->out.len = 0;
}

static void
emit_progress(struct import *imp)
{
	jw_lit(&imp->out, "data: {\"imported\":");
	jw_i64(&imp->out, imp->imported);
	jw_lit(&imp->out, ",\"gpos\":");
	jw_i64(&imp->out, imp->last_gpos);
	jw_lit(&imp->out, "}\n\n");
	emit(imp);
}

static void
emit_done(struct import *imp)
{
	double secs = (double)(now_unix_us() - imp->t0_us) / 1e6;
	char elapsed[32];

	snprintf(elapsed, sizeof(elapsed), "%.1fs", secs);
	jw_lit(&imp->out, "data: {\"done\":true,\"imported\":");
	jw_i64(&imp->out, imp->imported);
	jw_lit(&imp->out, ",\"elapsed\":");
	jw_cstr(&imp->out, elapsed);
	jw_lit(&imp->out, "}\n\n");
	emit(imp);
	log_info("import done namespace=%s imported=%lld elapsed=%s", imp->ns, (long long)imp->imported, elapsed);
}

static void
emit_error(struct import *imp, const char *code, const char *msg, int64_t line)
{
	jw_lit(&imp->out, "data: {\"error\":");
	jw_cstr(&imp->out, code);
	jw_lit(&imp->out, ",\"message\":");
	jw_cstr(&imp->out, msg);
	if (line > 0) {
		jw_lit(&imp->out, ",\"line\":");
		jw_i64(&imp->out, line);
	}
	jw_lit(&imp->out, "}\n\n");
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

/* The batch is complete: its record pointers become real. */
static void
batch_seal(struct batch *b, bool progress)
{
	for (size_t i = 0; i < b->n; i++)
		irec_resolve(&b->arena, &b->recs[i]);
	b->ready = true;
	b->progress = progress;
}

static void
batch_reset(struct batch *b)
{
	if (b == NULL)
		return;
	b->n = 0;
	b->ready = false;
	b->progress = false;
	/* one batch of huge records must not pin its arena */
	irec_arena_reset(&b->arena, 2 * IMPORT_BATCH_BYTES);
}

/* One non-blank line (irec_parse) into the current batch. false (with the
 * error noted) when the import must stop. */
static bool
take_line(struct import *imp, const char *p, size_t n)
{
	struct batch *b = batch_cur(imp);
	struct irec_error e;

	if (b == NULL) {
		fail(imp, "IMPORT_FAILED", imp->line, "out of memory");
		return false;
	}
	if (irec_parse(imp->w->tok, p, n, imp->line, &b->arena, &b->recs[b->n], &e) != 0) {
		fail(imp, e.code, imp->line, "%s", e.msg);
		return false;
	}
	b->n++;
	b->last_line = imp->line;
	return true;
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
		imp->w->me->st.import_records += b->n;
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

/* Whether the whole body has arrived. */
static bool
body_ended(struct import *imp)
{
	return imp->req == NULL || http_body_ended(imp->req);
}

/* Reads lines until a batch must wait, input runs out or the import ends. */
static void
read_lines(struct import *imp)
{
	while (!imp->err && !imp->eof && imp->req != NULL) {
		struct batch *b = imp->b[imp->fill];
		size_t n, take, avail;
		const char *p, *nl;

		if (b != NULL && b->ready) {
			submit(imp);
			if (imp->b[imp->fill] != NULL && imp->b[imp->fill]->ready)
				return; /* both batches full: wait for the store */
			continue;
		}
		p = http_body_data(imp->req, &avail);
		nl = memchr(p, '\n', avail < IMPORT_LINE_MAX + 1 ? avail : IMPORT_LINE_MAX + 1);
		if (nl != NULL) {
			n = (size_t)(nl - p);
			take = n + 1;
		} else if (!body_ended(imp)) {
			if (avail >= IMPORT_LINE_MAX)
				fail(imp, "READ_ERROR", imp->line,
				     "error reading input: bufio.Scanner: token too long");
			return;
		} else if ((n = avail) == 0) {
			imp->eof = true;
			return;
		} else {
			take = n; /* the last line, without a newline */
		}
		if (n >= IMPORT_LINE_MAX) {
			fail(imp, "READ_ERROR", imp->line, "error reading input: bufio.Scanner: token too long");
			return;
		}
		imp->line++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (!irec_blank(p, n) && take_line(imp, p, n)) {
			b = imp->b[imp->fill];
			if (b->n == STORE_IMPORT_MAX || b->arena.len >= IMPORT_BATCH_BYTES)
				batch_seal(b, true);
		}
		http_body_consume(imp->req, take);
	}
}

/* Runs whenever something changed: more body, a batch back, the end. */
static void
process(struct import *imp)
{
	if (imp->finished || !imp->streaming || imp->req == NULL)
		return;
	read_lines(imp);
	if (!imp->err && !imp->eof && imp->req != NULL && http_body_broken(imp->req))
		fail(imp, "READ_ERROR", imp->line, "error reading input: malformed or unfinished request body");
	if (imp->flying >= 0)
		return; /* the rest waits for the batch in the store */
	if (imp->err) {
		/* Whether the rest of the body had arrived yet must not decide what
		 * happens to what follows it: after an error the connection ends. */
		if (imp->req != NULL)
			http_close_after(imp->req);
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
	http_add_header(imp->req, "Cache-Control", "no-cache");
	http_add_header(imp->req, "X-Accel-Buffering", "no");
	imp->t0_us = now_unix_us();
	/* the body first: "100 Continue" must precede the reply's head */
	if (http_body_accept(imp->req, on_body, imp) != 0 ||
	    http_stream_begin(imp->req, 200, "text/event-stream") != 0) {
		/* the client is gone (its close callback has run or runs now) */
		return;
	}
	imp->streaming = true;
	imp->ka = event_new(imp->w->base, -1, EV_PERSIST, on_keepalive, imp);
	if (imp->ka != NULL) {
		struct timeval tv = {(time_t)imp->w->cfg->sse_keepalive, 0};
		event_add(imp->ka, &tv);
	}
	process(imp);
}

/* An error before the stream began: the JSON error reply (D17). The
 * connection layer drops the unread body (or closes, if the client waits
 * for a 100 Continue it never got). */
static void
reject(struct import *imp, int status, const char *code, const char *message, const char *details)
{
	if (imp->req != NULL) {
		http_on_close(imp->req, NULL, NULL);
		http_send_error(imp->req, status, code, message, details);
	}
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
	if (r->status == ST_NS_NOT_FOUND) {
		/* deleted between the authentication and the clear */
		char msg[128];
		snprintf(msg, sizeof(msg), "Namespace '%s' not found", imp->ns);
		reject(imp, 404, "NAMESPACE_NOT_FOUND", msg, NULL);
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
	http_add_header(imp->req, "X-EventoDB-Token", token);
	begin(imp);
}

/* ?force=true (Go's strconv.ParseBool true values). */
static bool
force_param(struct http_req *req)
{
	char v[16];
	size_t n;

	if (http_req_param(req, "force", v, sizeof(v), &n) != 1)
		return false;
	return strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "t") == 0 || strcmp(v, "T") == 0 ||
	       strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0;
}

void
import_handle(struct http_req *req)
{
	struct worker *w = http_req_worker(req);
	struct import *imp = calloc(1, sizeof(*imp));
	struct auth_result a;

	if (imp == NULL) {
		http_send_error(req, 500, "INTERNAL_ERROR", "out of memory", NULL);
		return;
	}
	imp->magic = IMPORT_MAGIC;
	imp->w = w;
	imp->req = req;
	imp->start_us = http_req_start_us(req);
	imp->flying = -1;
	auth_check(w, req, &a);
	if (a.status != 0) {
		reject(imp, a.status, a.code, a.message, a.details);
		return;
	}
	/* an authenticated namespace is in the shared table, so it fits */
	memcpy(imp->ns, a.ns, strnlen(a.ns, sizeof(imp->ns) - 1));
	imp->force = force_param(req);
	/* from here on, learn of the connection going away (also before the
	 * stream starts: a store call may be in flight) */
	http_on_close(req, on_close, imp);
	if (a.autocreate) {
		/* test mode: create the token's namespace first (SPEC D2) */
		int rc = auth_autocreate(w, &a, autocreated, imp);
		if (rc == AUTH_NS_LIMIT) {
			char msg[160];
			auth_ns_limit_message(w, msg, sizeof(msg));
			reject(imp, 507, "NAMESPACE_LIMIT", msg, NULL);
			return;
		}
		if (rc != 0) {
			reject(imp, 503, "BACKEND_UNAVAILABLE",
			       "Database unavailable: no connection, or too many requests waiting", NULL);
			return;
		}
		imp->busy = true;
		return;
	}
	begin(imp);
}
