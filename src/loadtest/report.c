/*
 * What the load tester reports: the server's counters read before and after
 * the run (GET /debug/stats for the per-method request counts, GET
 * /debug/pprof/allocs for allocations), the summary on stdout and the JSON
 * results file. Anything the server does not offer is said so and left null,
 * never guessed.
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "evlib.h"
#include "lt.h"

#define STATS_PATH "/debug/stats"
#define ALLOCS_PATH "/debug/pprof/allocs"

/* ---- snapshots --------------------------------------------------------------------- */

void
lt_server_before(struct event_base *base, const struct lt_target *t, const struct lt_opts *o, struct lt_server *s)
{
	memset(s, 0, sizeof(*s));
	lt_fetch_get(base, t, STATS_PATH, o->timeout_s, &s->stats_before);
	lt_fetch_get(base, t, ALLOCS_PATH, o->timeout_s, &s->allocs_before);
	/* A second snapshot right away measures what one snapshot itself
	 * allocates, to be taken off the run's count. */
	if (s->allocs_before.status == 200)
		lt_fetch_get(base, t, ALLOCS_PATH, o->timeout_s, &s->allocs_idle);
}

void
lt_server_after(struct event_base *base, const struct lt_target *t, const struct lt_opts *o, struct lt_server *s)
{
	if (s->allocs_idle.status == 200)
		lt_fetch_get(base, t, ALLOCS_PATH, o->timeout_s, &s->allocs_after);
	if (s->stats_before.status == 200)
		lt_fetch_get(base, t, STATS_PATH, o->timeout_s, &s->stats_after);
}

void
lt_server_clear(struct lt_server *s)
{
	lt_fetch_clear(&s->stats_before);
	lt_fetch_clear(&s->stats_after);
	lt_fetch_clear(&s->allocs_before);
	lt_fetch_clear(&s->allocs_idle);
	lt_fetch_clear(&s->allocs_after);
}

/* Why a snapshot is not usable, in words; "" when it is. */
static void
why_not(const char *path, const struct lt_fetch *f, char *out, size_t outlen)
{
	json_object *root, *err, *msg;

	out[0] = '\0';
	if (f->status == 200)
		return;
	if (f->status == 0) {
		snprintf(out, outlen, "GET %s failed: %s", path, f->err[0] ? f->err : "not asked");
		return;
	}
	root = f->body != NULL ? json_tokener_parse(f->body) : NULL;
	if (root != NULL && json_object_object_get_ex(root, "error", &err) &&
	    json_object_object_get_ex(err, "message", &msg))
		snprintf(out, outlen, "GET %s answered %d: %s", path, f->status, json_object_get_string(msg));
	else
		snprintf(out, outlen, "GET %s answered %d", path, f->status);
	if (f->status == 401 || f->status == 403)
		snprintf(out + strlen(out), outlen - strlen(out), " (it needs the admin token: --token)");
	else if (f->status == 404 || f->status == 501)
		snprintf(out + strlen(out), outlen - strlen(out), " (this server does not offer it)");
	json_object_put(root);
}

static bool
get_i64(json_object *o, const char *key, int64_t *v)
{
	json_object *x;

	if (o == NULL || !json_object_object_get_ex(o, key, &x) ||
	    !(json_object_is_type(x, json_type_int) || json_object_is_type(x, json_type_double)))
		return false;
	*v = json_object_get_int64(x);
	return true;
}

/* The "stats" object of a /debug/stats answer. */
static json_object *
stats_of(json_object *root)
{
	json_object *st;

	return root != NULL && json_object_object_get_ex(root, "stats", &st) ? st : NULL;
}

/* Total allocation count and bytes of a /debug/pprof/allocs answer: the
 * "total" object summed over the workers. */
static bool
allocs_of(const char *body, int64_t *count, int64_t *bytes)
{
	json_object *root = body != NULL ? json_tokener_parse(body) : NULL, *tot = NULL;
	bool ok;

	if (root != NULL && !json_object_object_get_ex(root, "total", &tot))
		tot = root;
	ok = get_i64(tot, "allocs", count);
	if (!get_i64(tot, "bytes", bytes))
		*bytes = -1;
	json_object_put(root);
	return ok;
}

/* Each worker's allocations over the run (the after snapshot less the one
 * just before the run, snapshot costs included), matched by worker number;
 * a worker whose pid changed was restarted and its count began again. */
static json_object *
per_worker(const char *before, const char *after)
{
	json_object *b = json_tokener_parse(before), *a = json_tokener_parse(after), *out = json_object_new_array();
	json_object *wb, *wa;

	if (b == NULL || a == NULL || !json_object_object_get_ex(b, "workers", &wb) ||
	    !json_object_object_get_ex(a, "workers", &wa) || !json_object_is_type(wb, json_type_array) ||
	    !json_object_is_type(wa, json_type_array))
		goto out;
	for (size_t i = 0; i < json_object_array_length(wa); i++) {
		json_object *x = json_object_array_get_idx(wa, i), *o;
		int64_t n, pid, allocs, bytes, n2, pid2, allocs2, bytes2;
		bool found = false;

		if (!get_i64(x, "worker", &n) || !get_i64(x, "pid", &pid) || !get_i64(x, "allocs", &allocs) ||
		    !get_i64(x, "bytes", &bytes))
			continue;
		for (size_t j = 0; j < json_object_array_length(wb) && !found; j++) {
			json_object *y = json_object_array_get_idx(wb, j);

			found = get_i64(y, "worker", &n2) && n2 == n && get_i64(y, "pid", &pid2) && pid2 == pid &&
			        get_i64(y, "allocs", &allocs2) && get_i64(y, "bytes", &bytes2);
		}
		o = json_object_new_object();
		json_object_object_add(o, "worker", json_object_new_int64(n));
		json_object_object_add(o, "allocs", found ? json_object_new_int64(allocs - allocs2) : NULL);
		json_object_object_add(o, "bytes", found ? json_object_new_int64(bytes - bytes2) : NULL);
		json_object_object_add(o, "restarted", json_object_new_boolean(!found));
		json_object_array_add(out, o);
	}
out:
	json_object_put(b);
	json_object_put(a);
	return out;
}

/* ---- JSON helpers --------------------------------------------------------------------- */

static json_object *
jnum(double v, int decimals)
{
	char s[64];

	if (!isfinite(v))
		return NULL;
	snprintf(s, sizeof(s), "%.*f", decimals, v);
	return json_object_new_double_s(v, s);
}

static json_object *
jms(uint64_t ns)
{
	return jnum((double)ns / 1e6, 3);
}

static void
add_latency(json_object *o, const struct lt_hist *h)
{
	json_object_object_add(o, "avg_latency_ms", h->count ? jnum(lt_hist_mean(h) / 1e6, 3) : NULL);
	json_object_object_add(o, "min_ms", h->count ? jms(h->min_ns) : NULL);
	json_object_object_add(o, "p50_ms", h->count ? jms(lt_hist_quantile(h, 0.50)) : NULL);
	json_object_object_add(o, "p95_ms", h->count ? jms(lt_hist_quantile(h, 0.95)) : NULL);
	json_object_object_add(o, "p99_ms", h->count ? jms(lt_hist_quantile(h, 0.99)) : NULL);
	json_object_object_add(o, "p999_ms", h->count ? jms(lt_hist_quantile(h, 0.999)) : NULL);
	json_object_object_add(o, "max_ms", h->count ? jms(h->max_ns) : NULL);
}

static int
make_dirs(const char *dir)
{
	char p[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -1;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0777) != 0 && errno != EEXIST)
			return -1;
		if (i < n)
			p[i] = '/';
	}
	return 0;
}

/* ---- the report ------------------------------------------------------------------------ */

int
lt_report(const struct lt_opts *o, const struct lt_mix *mix, const struct lt_result *r, const struct lt_server *s,
          const char *path, bool *counts_match)
{
	json_object *out = json_object_new_object(), *methods = json_object_new_object();
	json_object *srv = json_object_new_object(), *al = json_object_new_object(), *cl = json_object_new_object();
	json_object *sb = NULL, *sa = NULL, *stb, *sta;
	char ts[RFC3339_BUFLEN], why[512], tmp[4200];
	int64_t delta[LT_NMETHODS] = {0}, ab = 0, ai = 0, aa = 0, bb, bi, ba, allocs = 0, bytes = -1;
	bool have_stats, have_allocs = false, match = true;
	uint64_t writes = r->m[LT_WRITE].count, reads = r->m[LT_GET].count + r->m[LT_CATEGORY].count;
	double ops_s = r->duration_s > 0 ? (double)r->total / r->duration_s : 0;
	const char *text;
	FILE *f;
	int rc = 0;

	/* server request counters */
	why_not(STATS_PATH, &s->stats_before, why, sizeof(why));
	if (why[0] == '\0')
		why_not(STATS_PATH, &s->stats_after, why, sizeof(why));
	if (why[0] == '\0') {
		sb = json_tokener_parse(s->stats_before.body);
		sa = json_tokener_parse(s->stats_after.body);
	}
	stb = stats_of(sb);
	sta = stats_of(sa);
	have_stats = stb != NULL && sta != NULL;
	if (why[0] == '\0' && !have_stats)
		snprintf(why, sizeof(why), "GET %s: no \"stats\" object in the answer", STATS_PATH);
	for (int m = 0; m < LT_NMETHODS && have_stats; m++) {
		int64_t b, a;

		if (!get_i64(stb, lt_method_counters[m], &b) || !get_i64(sta, lt_method_counters[m], &a)) {
			snprintf(why, sizeof(why), "GET %s: no counter %s", STATS_PATH, lt_method_counters[m]);
			have_stats = false;
			break;
		}
		delta[m] = a - b;
	}
	json_object_object_add(srv, "available", json_object_new_boolean(have_stats));
	json_object_object_add(srv, "reason", have_stats ? NULL : json_object_new_string(why));
	if (have_stats) {
		for (int m = 0; m < LT_NMETHODS; m++) {
			json_object_object_add(srv, lt_method_counters[m], json_object_new_int64(delta[m]));
			if ((uint64_t)delta[m] != r->m[m].count)
				match = false;
		}
		json_object_object_add(srv, "match", json_object_new_boolean(match));
	}
	*counts_match = have_stats && match;
	json_object_put(sb);
	json_object_put(sa);

	/* allocations */
	why_not(ALLOCS_PATH, &s->allocs_before, why, sizeof(why));
	if (why[0] == '\0')
		why_not(ALLOCS_PATH, &s->allocs_idle, why, sizeof(why));
	if (why[0] == '\0')
		why_not(ALLOCS_PATH, &s->allocs_after, why, sizeof(why));
	if (why[0] == '\0') {
		have_allocs = allocs_of(s->allocs_before.body, &ab, &bb) && allocs_of(s->allocs_idle.body, &ai, &bi) &&
		              allocs_of(s->allocs_after.body, &aa, &ba);
		if (!have_allocs)
			snprintf(why, sizeof(why), "GET %s: no total allocation count in the answer", ALLOCS_PATH);
	}
	json_object_object_add(al, "available", json_object_new_boolean(have_allocs));
	json_object_object_add(al, "reason", have_allocs ? NULL : json_object_new_string(why));
	if (have_allocs) {
		/* (after - idle) is the run plus what one snapshot costs, (idle - before) */
		allocs = (aa - ai) - (ai - ab);
		if (bb >= 0 && bi >= 0 && ba >= 0)
			bytes = (ba - bi) - (bi - bb);
		json_object_object_add(al, "allocs", json_object_new_int64(allocs));
		json_object_object_add(al, "bytes", bytes >= 0 ? json_object_new_int64(bytes) : NULL);
		json_object_object_add(al, "snapshot_allocs", json_object_new_int64(ai - ab));
		json_object_object_add(al, "per_worker", per_worker(s->allocs_idle.body, s->allocs_after.body));
	}

	/* methods */
	for (int m = 0; m < LT_NMETHODS; m++) {
		json_object *mo = json_object_new_object();
		const struct lt_method_stats *ms = &r->m[m];
		bool mine = have_allocs && mix->single && ms->count > 0 && ms->count == r->total;

		json_object_object_add(mo, "count", json_object_new_int64((int64_t)ms->count));
		json_object_object_add(mo, "errors", json_object_new_int64((int64_t)ms->errors));
		json_object_object_add(mo, "ops_per_sec",
		                       jnum(r->duration_s > 0 ? (double)ms->count / r->duration_s : 0, 1));
		add_latency(mo, &ms->hist);
		json_object_object_add(mo, "server_count", have_stats ? json_object_new_int64(delta[m]) : NULL);
		json_object_object_add(mo, "allocs_per_request",
		                       mine ? jnum((double)allocs / (double)ms->count, 2) : NULL);
		json_object_object_add(methods, lt_method_names[m], mo);
	}

	rfc3339_format_sec((int64_t)time(NULL), ts);
	json_object_object_add(out, "timestamp", json_object_new_string(ts));
	json_object_object_add(out, "url", json_object_new_string(o->url));
	json_object_object_add(out, "mix", json_object_new_string(mix->name));
	json_object_object_add(out, "connections", json_object_new_int64(o->connections));
	json_object_object_add(out, "streams", json_object_new_int64(o->streams));
	json_object_object_add(out, "categories", json_object_new_int64(o->categories));
	json_object_object_add(out, "read_every", json_object_new_int64(o->read_every));
	json_object_object_add(out, "batch_size", json_object_new_int64(o->batch_size));
	json_object_object_add(out, "prefill_writes", json_object_new_int64((int64_t)r->prefill_writes));
	json_object_object_add(out, "duration_s", jnum(r->duration_s, 3));
	json_object_object_add(out, "total_ops", json_object_new_int64((int64_t)r->total));
	json_object_object_add(out, "writes", json_object_new_int64((int64_t)writes));
	json_object_object_add(out, "reads", json_object_new_int64((int64_t)reads));
	json_object_object_add(out, "other", json_object_new_int64((int64_t)r->m[LT_VERSION].count));
	json_object_object_add(out, "errors", json_object_new_int64((int64_t)r->errors));
	json_object_object_add(out, "failures", json_object_new_int64((int64_t)r->failures));
	json_object_object_add(out, "ops_per_sec", jnum(ops_s, 1));
	add_latency(out, &r->all);
	json_object_object_add(out, "methods", methods);
	json_object_object_add(out, "server_counters", srv);
	json_object_object_add(out, "allocs", al);
	json_object_object_add(out, "allocs_per_request",
	                       have_allocs && r->total ? jnum((double)allocs / (double)r->total, 2) : NULL);
	json_object_object_add(out, "alloc_bytes_per_request",
	                       have_allocs && bytes >= 0 && r->total ? jnum((double)bytes / (double)r->total, 1)
	                                                             : NULL);
	json_object_object_add(cl, "cpu_s", jnum(r->cpu_s, 6));
	json_object_object_add(cl, "cpu_us_per_op", r->total ? jnum(r->cpu_s * 1e6 / (double)r->total, 2) : NULL);
	json_object_object_add(cl, "max_rss_kb", json_object_new_int64(r->max_rss_kb));
	json_object_object_add(cl, "reconnects", json_object_new_int64((int64_t)r->reconnects));
	json_object_object_add(out, "client", cl);
	json_object_object_add(out, "first_error", r->first_error[0] ? json_object_new_string(r->first_error) : NULL);
	json_object_object_add(out, "interrupted", json_object_new_boolean(r->interrupted));

	/* the summary */
	printf("%s: %s mix, %ld connections, %.1f s against %s%s\n", LT_PROG, mix->name, o->connections, r->duration_s,
	       o->url, r->interrupted ? " (interrupted)" : "");
	printf("  total      %" PRIu64 " ops, %.1f ops/s, %" PRIu64 " errors (%" PRIu64 " without an answer)\n",
	       r->total, ops_s, r->errors, r->failures);
	printf("  latency    avg %.3f  p50 %.3f  p95 %.3f  p99 %.3f  max %.3f ms\n", lt_hist_mean(&r->all) / 1e6,
	       (double)lt_hist_quantile(&r->all, 0.50) / 1e6, (double)lt_hist_quantile(&r->all, 0.95) / 1e6,
	       (double)lt_hist_quantile(&r->all, 0.99) / 1e6, (double)r->all.max_ns / 1e6);
	for (int m = 0; m < LT_NMETHODS; m++) {
		const struct lt_method_stats *ms = &r->m[m];

		if (ms->count == 0)
			continue;
		printf("  %-12s %" PRIu64 " ops, %" PRIu64 " errors, p50 %.3f  p99 %.3f ms", lt_method_names[m],
		       ms->count, ms->errors, (double)lt_hist_quantile(&ms->hist, 0.50) / 1e6,
		       (double)lt_hist_quantile(&ms->hist, 0.99) / 1e6);
		if (have_stats)
			printf(", server counted %" PRId64, delta[m]);
		printf("\n");
	}
	if (r->prefill_writes)
		printf("  prefill    %" PRIu64 " stream.write before the run (not counted above)\n", r->prefill_writes);
	if (have_allocs && r->total)
		printf("  allocs     %.2f per request, %.1f bytes per request (server, all workers)\n",
		       (double)allocs / (double)r->total, bytes >= 0 ? (double)bytes / (double)r->total : NAN);
	else
		printf("  allocs     not measured: %s\n", json_object_get_string(json_object_object_get(al, "reason")));
	if (!have_stats)
		printf("  counters   not compared: %s\n",
		       json_object_get_string(json_object_object_get(srv, "reason")));
	else if (!match)
		printf("  counters   DIFFER from the server's (another client, or requests without an answer?)\n");
	else
		printf("  counters   match the server's\n");
	printf("  client     %.3f s CPU, %.2f us per request\n", r->cpu_s,
	       r->total ? r->cpu_s * 1e6 / (double)r->total : 0.0);
	if (r->first_error[0])
		printf("  first error %s\n", r->first_error);

	/* the file, written whole or not at all */
	text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (o->profile_dir != NULL && make_dirs(o->profile_dir) != 0) {
		fprintf(stderr, "%s: cannot create %s: %s\n", LT_PROG, o->profile_dir, strerror(errno));
		rc = -1;
	} else if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) || (f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "%s: cannot write %s: %s\n", LT_PROG, path, strerror(errno));
		rc = -1;
	} else {
		fprintf(f, "%s\n", text);
		if (fclose(f) != 0 || rename(tmp, path) != 0) {
			fprintf(stderr, "%s: cannot write %s: %s\n", LT_PROG, path, strerror(errno));
			remove(tmp);
			rc = -1;
		} else {
			printf("  results    %s\n", path);
		}
	}
	json_object_put(out);
	fflush(stdout);
	return rc;
}
