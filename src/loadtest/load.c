/*
 * The load itself: --connections keep-alive connections, each a closed loop
 * (send, wait for the answer, send the next), choosing its next request from
 * the mix. Every answer is counted under its method with its latency; the
 * counts are what the server's own per-method counters must show.
 */
#include "autoconf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "lt.h"

#define RETRY_MS 100 /* after a failed request, so a dead server is not hammered */

const char *const lt_method_names[LT_NMETHODS] = {"stream.write", "stream.get", "category.get", "sys.version"};
const char *const lt_method_counters[LT_NMETHODS] = {"rpc_stream_write", "rpc_stream_get", "rpc_category_get",
                                                     "rpc_sys"};

/* ---- mixes: request k of a connection -> method ------------------------------ */

static bool
every(uint64_t k, long n)
{
	return n > 0 && k % (uint64_t)(n + 1) == (uint64_t)n;
}

static enum lt_method
mix_mixed(uint64_t k, long r)
{
	return every(k, r) ? LT_GET : LT_WRITE;
}

static enum lt_method
mix_read_heavy(uint64_t k, long r)
{
	return every(k, r) || r == 0 ? LT_WRITE : LT_GET;
}

static enum lt_method
mix_category_read(uint64_t k, long r)
{
	return every(k, r) || r == 0 ? LT_WRITE : LT_CATEGORY;
}

static enum lt_method
mix_write(uint64_t k, long r)
{
	return LT_WRITE;
}

static enum lt_method
mix_get(uint64_t k, long r)
{
	return LT_GET;
}

static enum lt_method
mix_category(uint64_t k, long r)
{
	return LT_CATEGORY;
}

static enum lt_method
mix_version(uint64_t k, long r)
{
	return LT_VERSION;
}

const struct lt_mix lt_mixes[] = {
	{"mixed", "stream.write to the streams in turn, and after every --read-every writes a stream.get of the stream "
	          "just written",
	 false, false, mix_mixed},
	{"read-heavy", "--read-every stream.get (streams in turn) for every stream.write", true, false, mix_read_heavy},
	{"category-read", "--read-every category.get (categories in turn) for every stream.write", true, false,
	 mix_category_read},
	{"stream.write", "stream.write only", false, true, mix_write},
	{"stream.get", "stream.get only", true, true, mix_get},
	{"category.get", "category.get only", true, true, mix_category},
	{"sys.version", "sys.version only", false, true, mix_version},
	{NULL, NULL, false, false, NULL},
};

const struct lt_mix *
lt_mix_find(const char *name)
{
	for (const struct lt_mix *m = lt_mixes; m->name != NULL; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

/* ---- state --------------------------------------------------------------------- */

enum phase { PH_IDLE, PH_CONNECT, PH_PREFILL, PH_RUN };

struct slot {
	struct lt_load *l;
	struct lt_conn *c;
	struct event *retry;
	uint64_t k; /* requests of this connection in the run */
	uint64_t t0;
	long last_stream; /* the stream it wrote last, -1 before the first write */
	enum lt_method cur;
	bool inflight;
	char req[2048];
};

struct lt_load {
	struct event_base *base;
	const struct lt_opts *o;
	const struct lt_mix *mix;
	const struct lt_target *t;
	struct slot *slots;
	long n;
	enum phase phase;
	bool stopping;
	bool failed;
	long inflight;
	uint64_t next_write, next_read, next_cat, seq;
	uint64_t prefill_left, prefill_next;
	char err[512];
	/* the run */
	struct lt_result *r;
	struct lt_hist interval;
	uint64_t interval_ops, interval_errors;
	uint64_t t_start, t_end;
	long ticks;
	struct event *stop_ev, *tick_ev;
	struct rusage ru0;
};

static void issue(struct slot *s);

static void
category_name(const struct lt_load *l, long c, char *out, size_t outlen)
{
	if (l->o->categories == 1)
		snprintf(out, outlen, "test");
	else
		snprintf(out, outlen, "test%ld", c);
}

/* The JSON body of the next request of method m on slot s. */
static int
body_for(struct lt_load *l, struct slot *s, enum lt_method m, long stream, char *out, size_t outlen)
{
	char cat[32];

	switch (m) {
	case LT_WRITE:
		category_name(l, stream % l->o->categories, cat, sizeof(cat));
		s->last_stream = stream;
		return snprintf(out, outlen,
		                "[\"stream.write\",\"%s-stream-%ld\",{\"type\":\"LoadTest\",\"data\":{\"n\":%" PRIu64
		                ",\"text\":\"hello world\"}}]",
		                cat, stream, ++l->seq);
	case LT_GET:
		category_name(l, stream % l->o->categories, cat, sizeof(cat));
		return snprintf(out, outlen, "[\"stream.get\",\"%s-stream-%ld\",{\"batchSize\":%ld}]", cat, stream,
		                l->o->batch_size);
	case LT_CATEGORY:
		category_name(l, (long)(l->next_cat++ % (uint64_t)l->o->categories), cat, sizeof(cat));
		return snprintf(out, outlen, "[\"category.get\",\"%s\",{\"batchSize\":%ld}]", cat, l->o->batch_size);
	default:
		return snprintf(out, outlen, "[\"sys.version\"]");
	}
}

static long
stream_for(struct lt_load *l, struct slot *s, enum lt_method m)
{
	uint64_t n = (uint64_t)l->o->streams;

	if (m == LT_WRITE)
		return (long)(l->next_write++ % n);
	if (m == LT_GET && l->mix->next == mix_mixed && s->last_stream >= 0)
		return s->last_stream; /* the seed's load reads back what it wrote */
	return (long)(l->next_read++ % n);
}

static void
note_error(struct lt_load *l, enum lt_method m, int status, const char *body, size_t len)
{
	struct lt_result *r = l->r;

	if (r == NULL || r->first_error[0] != '\0')
		return;
	while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r'))
		len--;
	if (status == 0)
		snprintf(r->first_error, sizeof(r->first_error), "%s: %.*s", lt_method_names[m], (int)len, body);
	else
		snprintf(r->first_error, sizeof(r->first_error), "%s: HTTP %d %.*s", lt_method_names[m], status,
		         (int)(len > 300 ? 300 : len), body);
}

static void
phase_done(struct lt_load *l)
{
	if (l->phase == PH_RUN) {
		l->t_end = lt_now_ns();
		if (l->tick_ev != NULL)
			evtimer_del(l->tick_ev);
		if (l->stop_ev != NULL)
			evtimer_del(l->stop_ev);
	}
	event_base_loopbreak(l->base);
}

/* ---- answers ------------------------------------------------------------------- */

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;

	issue(s);
}

static void
on_answer(struct lt_conn *c, int status, const char *body, size_t len, void *arg)
{
	struct slot *s = arg;
	struct lt_load *l = s->l;
	uint64_t ns = lt_now_ns() - s->t0;
	bool bad = status != 200;

	s->inflight = false;
	l->inflight--;
	if (l->phase == PH_RUN) {
		struct lt_method_stats *ms = &l->r->m[s->cur];

		ms->count++;
		l->r->total++;
		l->interval_ops++;
		if (status != 0) {
			lt_hist_record(&ms->hist, ns);
			lt_hist_record(&l->interval, ns);
		} else {
			l->r->failures++;
		}
		if (bad) {
			ms->errors++;
			l->r->errors++;
			l->interval_errors++;
			note_error(l, s->cur, status, body, len);
		}
	} else if (bad && !l->failed) {
		l->failed = true;
		if (status == 0)
			snprintf(l->err, sizeof(l->err), "%.*s", (int)len, body);
		else
			snprintf(l->err, sizeof(l->err), "%s answered HTTP %d: %.*s",
			         l->phase == PH_CONNECT ? "GET /health" : "stream.write", status,
			         (int)(len > 300 ? 300 : len), body);
	}
	if (l->stopping || l->failed || l->phase == PH_CONNECT) {
		if (l->inflight == 0)
			phase_done(l);
		return;
	}
	if (status == 0 && l->phase == PH_RUN) {
		struct timeval tv = {0, RETRY_MS * 1000};

		evtimer_add(s->retry, &tv);
		return;
	}
	issue(s);
}

static void
send_failed(struct slot *s, const char *why)
{
	struct lt_load *l = s->l;

	/* counted like a request that got no answer */
	s->inflight = true;
	l->inflight++;
	on_answer(s->c, 0, why, strlen(why), s);
}

/* Sends the slot's next request of the current phase, if there is one. */
static void
issue(struct slot *s)
{
	struct lt_load *l = s->l;
	char body[512], err[256];
	enum lt_method m;
	size_t len;
	int bl;

	if (l->phase == PH_PREFILL) {
		if (l->prefill_left == 0) {
			if (l->inflight == 0)
				phase_done(l);
			return;
		}
		l->prefill_left--;
		m = LT_WRITE;
		bl = body_for(l, s, m, (long)(l->prefill_next++ % (uint64_t)l->o->streams), body, sizeof(body));
	} else {
		m = l->mix->next(s->k++, l->o->read_every);
		bl = body_for(l, s, m, stream_for(l, s, m), body, sizeof(body));
	}
	s->cur = m;
	len = bl > 0 && (size_t)bl < sizeof(body) ? lt_rpc_request(l->t, body, (size_t)bl, s->req, sizeof(s->req)) : 0;
	if (len == 0) {
		send_failed(s, "request too long");
		return;
	}
	s->t0 = lt_now_ns();
	if (lt_conn_send(s->c, s->req, len, false, err, sizeof(err)) != 0) {
		send_failed(s, err);
		return;
	}
	s->inflight = true;
	l->inflight++;
}

/* ---- phases ---------------------------------------------------------------------- */

struct lt_load *
lt_load_new(struct event_base *base, const struct lt_opts *o, const struct lt_mix *mix, const struct lt_target *t)
{
	struct lt_load *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->base = base;
	l->o = o;
	l->mix = mix;
	l->t = t;
	l->n = o->connections;
	l->slots = calloc((size_t)l->n, sizeof(*l->slots));
	if (l->slots == NULL)
		goto oom;
	for (long i = 0; i < l->n; i++) {
		struct slot *s = &l->slots[i];

		s->l = l;
		s->last_stream = -1;
		/* connections start at different points of the mix, so their reads do not come in waves */
		s->k = (uint64_t)i;
		s->c = lt_conn_new(base, t, o->timeout_s, on_answer, s);
		s->retry = evtimer_new(base, retry_cb, s);
		if (s->c == NULL || s->retry == NULL)
			goto oom;
	}
	return l;
oom:
	lt_load_free(l);
	return NULL;
}

void
lt_load_free(struct lt_load *l)
{
	if (l == NULL)
		return;
	for (long i = 0; l->slots != NULL && i < l->n; i++) {
		lt_conn_free(l->slots[i].c);
		if (l->slots[i].retry != NULL)
			event_free(l->slots[i].retry);
	}
	free(l->slots);
	if (l->stop_ev != NULL)
		event_free(l->stop_ev);
	if (l->tick_ev != NULL)
		event_free(l->tick_ev);
	free(l);
}

int
lt_load_connect(struct lt_load *l, char *err, size_t errlen)
{
	char req[2048];
	int n = snprintf(req, sizeof(req), "GET %s/health HTTP/1.1\r\nHost: %s\r\n\r\n", l->t->base, l->t->hostport);

	l->phase = PH_CONNECT;
	l->failed = false;
	for (long i = 0; i < l->n && !l->failed; i++) {
		struct slot *s = &l->slots[i];
		char e[256];

		if (lt_conn_send(s->c, req, (size_t)n, false, e, sizeof(e)) != 0) {
			l->failed = true;
			snprintf(l->err, sizeof(l->err), "%s", e);
			break;
		}
		s->inflight = true;
		l->inflight++;
	}
	if (l->inflight > 0)
		event_base_dispatch(l->base);
	l->phase = PH_IDLE;
	if (l->failed) {
		snprintf(err, errlen, "cannot reach %s: %s", l->o->url, l->err);
		return -1;
	}
	return 0;
}

int
lt_load_prefill(struct lt_load *l, long per_stream, char *err, size_t errlen)
{
	l->phase = PH_PREFILL;
	l->failed = false;
	l->prefill_left = (uint64_t)per_stream * (uint64_t)l->o->streams;
	l->prefill_next = 0;
	if (l->prefill_left > 0) {
		for (long i = 0; i < l->n && l->prefill_left > 0 && !l->failed; i++)
			issue(&l->slots[i]);
		if (l->inflight > 0)
			event_base_dispatch(l->base);
	}
	l->phase = PH_IDLE;
	for (long i = 0; i < l->n; i++)
		l->slots[i].last_stream = -1;
	if (l->failed) {
		snprintf(err, errlen, "filling the streams failed: %s", l->err);
		return -1;
	}
	return 0;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lt_load *l = arg;
	struct lt_hist *h = &l->interval;
	double secs = (double)(lt_now_ns() - l->t_start) / 1e9;

	l->ticks++;
	if (!l->o->quiet)
		fprintf(stderr,
		        "%s: %4lds  %8" PRIu64 " ops/s  %6" PRIu64 " errors  p50 %.3f ms  p99 %.3f ms  total %" PRIu64
		        " ops in %.1f s\n",
		        LT_PROG, l->ticks, l->interval_ops, l->interval_errors,
		        (double)lt_hist_quantile(h, 0.50) / 1e6, (double)lt_hist_quantile(h, 0.99) / 1e6, l->r->total,
		        secs);
	lt_hist_reset(h);
	l->interval_ops = 0;
	l->interval_errors = 0;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lt_load *l = arg;
	uint64_t want = (uint64_t)(l->o->duration_s * 1e9), ran = lt_now_ns() - l->t_start;

	/* libevent's timers run on the coarse clock (a few ms behind ours), which
	 * is cheaper per loop than a precise timer: wait out the rest */
	if (ran < want) {
		struct timeval tv = {(time_t)((want - ran) / 1000000000u),
		                     (suseconds_t)((want - ran) % 1000000000u / 1000 + 1)};

		evtimer_add(l->stop_ev, &tv);
		return;
	}
	lt_load_stop(l);
}

void
lt_load_stop(struct lt_load *l)
{
	if (l->phase != PH_RUN || l->stopping)
		return;
	l->stopping = true;
	/* nothing new starts; a connection waiting to retry has nothing in flight */
	for (long i = 0; i < l->n; i++)
		evtimer_del(l->slots[i].retry);
	if (l->inflight == 0)
		phase_done(l);
}

static double
cpu_seconds(const struct rusage *ru)
{
	return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
	       (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;
}

void
lt_load_run(struct lt_load *l, struct lt_result *r)
{
	struct timeval dur, sec = {1, 0};
	struct rusage ru1;
	uint64_t opened0 = lt_conn_opened();

	l->r = r;
	l->phase = PH_RUN;
	l->stopping = false;
	l->failed = false;
	lt_hist_reset(&l->interval);
	dur.tv_sec = (time_t)l->o->duration_s;
	dur.tv_usec = (suseconds_t)((l->o->duration_s - (double)dur.tv_sec) * 1e6);
	l->stop_ev = evtimer_new(l->base, stop_cb, l);
	l->tick_ev = event_new(l->base, -1, EV_PERSIST, tick_cb, l);
	getrusage(RUSAGE_SELF, &l->ru0);
	l->t_start = lt_now_ns();
	if (l->stop_ev == NULL || l->tick_ev == NULL) {
		snprintf(r->first_error, sizeof(r->first_error), "out of memory");
		l->t_end = l->t_start;
	} else {
		evtimer_add(l->stop_ev, &dur);
		evtimer_add(l->tick_ev, &sec);
		for (long i = 0; i < l->n; i++)
			issue(&l->slots[i]);
		event_base_dispatch(l->base);
	}
	getrusage(RUSAGE_SELF, &ru1);
	r->duration_s = (double)(l->t_end - l->t_start) / 1e9;
	r->cpu_s = cpu_seconds(&ru1) - cpu_seconds(&l->ru0);
	r->max_rss_kb = ru1.ru_maxrss;
	r->reconnects = lt_conn_opened() - opened0;
	for (int m = 0; m < LT_NMETHODS; m++)
		lt_hist_merge(&r->all, &r->m[m].hist);
	l->phase = PH_IDLE;
	l->r = NULL;
}
