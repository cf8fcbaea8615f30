/*
 * eventodb-loadtest: load for an EventoDB server over keep-alive HTTP/1.1,
 * with latency percentiles, request counts checked against the server's own
 * counters and allocations per request. The options are one table: --help
 * and the man page's OPTIONS section are printed from it.
 *
 * Phases, in order: open the connections, fill the streams when the mix
 * reads first, read the server's counters, run for --duration, let the
 * requests in flight finish, read the counters again, report.
 */
#include "autoconf.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "lt.h"

enum opt_type { OPT_STR, OPT_INT, OPT_SECONDS, OPT_BOOL };

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	double min, max;
	const char *def; /* parsed like a flag; NULL: none */
	const char *arg;
	const char *help;
};

#define OFF(f) offsetof(struct lt_opts, f)

/* Alphabetical. */
static const struct opt opts[] = {
	{"batch-size", OPT_INT, OFF(batch_size), 1, 10000, "10", "N", "batchSize of every stream.get and category.get"},
	{"categories", OPT_INT, OFF(categories), 1, 10000, "1", "N",
	 "categories the streams are spread over: test (one), or test0 .. testN-1"},
	{"connections", OPT_INT, OFF(connections), 1, 20000, "10", "N",
	 "keep-alive connections, each with one request in flight"},
	{"duration", OPT_SECONDS, OFF(duration_s), 0.001, 86400, "30s", "TIME",
	 "length of the measured run: seconds, or with a unit (500ms, 30s, 2m, 1h)"},
	{"mix", OPT_STR, OFF(mix), 0, 0, "mixed", "NAME", "the request mix (see MIXES below)"},
	{"output", OPT_STR, OFF(output), 0, 0, NULL, "FILE",
	 "where the JSON results go (default: load-test-results.json in --profile-dir, or here)"},
	{"prefill", OPT_INT, OFF(prefill), 0, 100000, NULL, "N",
	 "stream.write to every stream this many times before the run (default: --batch-size when the mix reads "
	 "first, else 0)"},
	{"profile-dir", OPT_STR, OFF(profile_dir), 0, 0, NULL, "DIR",
	 "directory for the results (created if missing)"},
	{"quiet", OPT_BOOL, OFF(quiet), 0, 0, NULL, NULL, "no progress lines on stderr"},
	{"read-every", OPT_INT, OFF(read_every), 0, 1000000, "10", "N",
	 "mixed: a stream.get after every N writes; read-heavy, category-read: N reads for every write (0: none)"},
	{"streams", OPT_INT, OFF(streams), 1, 10000000, "100", "N",
	 "streams written: test-stream-0 .. test-stream-N-1"},
	{"timeout", OPT_SECONDS, OFF(timeout_s), 0.001, 3600, "10s", "TIME",
	 "a request without an answer for this long fails (and its connection is reopened)"},
	{"token", OPT_STR, OFF(token), 0, 0, NULL, "TOKEN",
	 "sent as Authorization: Bearer; the admin token lets it read the server's counters (default: "
	 "$EVENTODB_TOKEN)"},
	{"url", OPT_STR, OFF(url), 0, 0, "http://127.0.0.1:8080", "URL", "the server"},
	{NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static int
parse_seconds(const char *s, double *out)
{
	char *end;
	double v, mul = 1;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v))
		return -1;
	if (strcmp(end, "ms") == 0)
		mul = 1e-3;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		return -1;
	*out = v * mul;
	return 0;
}

static int
set_opt(struct lt_opts *o, const struct opt *p, const char *val, char *err, size_t errlen)
{
	char *dst = (char *)o + p->off, *end;
	double d;
	long l;

	switch (p->type) {
	case OPT_STR:
		*(const char **)dst = val;
		return 0;
	case OPT_BOOL:
		*(bool *)dst = true;
		return 0;
	case OPT_INT:
		errno = 0;
		l = strtol(val, &end, 10);
		if (end == val || *end != '\0' || errno != 0) {
			snprintf(err, errlen, "--%s wants a whole number, not \"%.80s\"", p->name, val);
			return -1;
		}
		if ((double)l < p->min || (double)l > p->max) {
			snprintf(err, errlen, "--%s must be between %.0f and %.0f, not %ld", p->name, p->min, p->max,
			         l);
			return -1;
		}
		*(long *)dst = l;
		return 0;
	case OPT_SECONDS:
		if (parse_seconds(val, &d) != 0) {
			snprintf(err, errlen, "--%s wants a time such as 30, 30s, 500ms or 2m, not \"%.80s\"", p->name,
			         val);
			return -1;
		}
		if (d < p->min || d > p->max) {
			snprintf(err, errlen, "--%s must be between %gs and %gs, not %.80s", p->name, p->min, p->max,
			         val);
			return -1;
		}
		*(double *)dst = d;
		return 0;
	}
	return -1;
}

/* 1: --help; 0: parsed; -1: a usage error (message in err). */
static int
parse_args(struct lt_opts *o, int argc, char **argv, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->prefill = -1;
	for (const struct opt *p = opts; p->name != NULL; p++)
		if (p->def != NULL && set_opt(o, p, p->def, err, errlen) != 0)
			return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *val;
		const struct opt *p = NULL;
		size_t n;

		if (a[0] != '-' || a[1] == '\0') {
			snprintf(err, errlen, "unexpected argument \"%.80s\"", a);
			return -1;
		}
		a += a[1] == '-' ? 2 : 1; /* --flag and -flag, as the server takes them */
		eq = strchr(a, '=');
		n = eq != NULL ? (size_t)(eq - a) : strlen(a);
		if ((n == 4 && strncmp(a, "help", 4) == 0) || (n == 1 && a[0] == 'h'))
			return 1;
		for (const struct opt *q = opts; q->name != NULL; q++)
			if (strlen(q->name) == n && strncmp(q->name, a, n) == 0)
				p = q;
		if (p == NULL) {
			snprintf(err, errlen, "unknown option --%.*s", (int)(n > 80 ? 80 : n), a);
			return -1;
		}
		if (p->type == OPT_BOOL) {
			if (eq != NULL) {
				snprintf(err, errlen, "--%s takes no value", p->name);
				return -1;
			}
			val = "";
		} else if (eq != NULL) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			snprintf(err, errlen, "--%s needs a value", p->name);
			return -1;
		}
		if (set_opt(o, p, val, err, errlen) != 0)
			return -1;
	}
	if (o->token == NULL)
		o->token = getenv("EVENTODB_TOKEN");
	if (o->categories > o->streams) {
		snprintf(err, errlen, "--categories (%ld) cannot be more than --streams (%ld)", o->categories,
		         o->streams);
		return -1;
	}
	return 0;
}

static void
usage(FILE *out)
{
	char flag[64];

	fprintf(out, "Usage: %s [options]\n\n"
	             "Load for an EventoDB server: keep-alive HTTP/1.1 connections, each a closed loop of RPC\n"
	             "requests. Prints a summary, writes the results as JSON, and checks its request counts\n"
	             "against the server's (GET /debug/stats) and counts allocations per request (GET\n"
	             "/debug/pprof/allocs) when the token is the admin token.\n\nOptions:\n",
	        LT_PROG);
	for (const struct opt *p = opts; p->name != NULL; p++) {
		snprintf(flag, sizeof(flag), "--%s%s%s", p->name, p->arg ? " " : "", p->arg ? p->arg : "");
		fprintf(out, "  %-22s %s", flag, p->help);
		if (p->def != NULL)
			fprintf(out, " (default %s)", p->def);
		fprintf(out, "\n");
	}
	fprintf(out, "  %-22s %s\n\nMixes:\n", "--help", "this text");
	for (const struct lt_mix *m = lt_mixes; m->name != NULL; m++)
		fprintf(out, "  %-22s %s\n", m->name, m->help);
	fprintf(out, "\nExit status: 0 when the run had no errors, 1 when it had errors or could not run,\n"
	             "2 for a bad option.\n");
}

/* Text for roff: '-' as the minus sign \-, '\' as \e. */
static void
roff_text(FILE *out, const char *s)
{
	for (; *s; s++)
		if (*s == '-')
			fputs("\\-", out);
		else if (*s == '\\')
			fputs("\\e", out);
		else
			fputc(*s, out);
}

/* roff for the man page's OPTIONS and MIXES sections (make uses it). */
static void
usage_roff(FILE *out)
{
	for (const struct opt *p = opts; p->name != NULL; p++) {
		fputs(".TP\n.B \\-\\-", out);
		roff_text(out, p->name);
		if (p->arg != NULL)
			fprintf(out, " \\fI%s\\fR", p->arg);
		fputs("\n", out);
		roff_text(out, p->help);
		fputs(".", out);
		if (p->def != NULL) {
			fputs(" Default: \\fB", out);
			roff_text(out, p->def);
			fputs("\\fR.", out);
		}
		fputs("\n", out);
	}
	fputs(".TP\n.B \\-\\-help\nPrints the options and mixes.\n", out);
}

static void
usage_roff_mixes(FILE *out)
{
	for (const struct lt_mix *m = lt_mixes; m->name != NULL; m++) {
		fputs(".TP\n.B ", out);
		roff_text(out, m->name);
		fputs("\n", out);
		roff_text(out, m->help);
		fputs(".\n", out);
	}
}

struct interrupt {
	struct event *ev;
	struct lt_load *l;
	struct lt_result *r;
};

/* The first SIGINT ends the run early but still reports; the handler is
 * removed, so a second one ends the process at once. */
static void
on_sigint(evutil_socket_t fd, short what, void *arg)
{
	struct interrupt *in = arg;

	fprintf(stderr, "%s: interrupted, waiting for the requests in flight\n", LT_PROG);
	in->r->interrupted = true;
	event_del(in->ev);
	lt_load_stop(in->l);
}

static int
raise_fd_limit(long connections, char *err, size_t errlen)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)connections + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		snprintf(err, errlen, "--connections %ld needs %lu open files, the limit is %lu (ulimit -n)",
		         connections, (unsigned long)want, (unsigned long)rl.rlim_max);
		return -1;
	}
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, errlen, "cannot raise the open-file limit to %lu: %s", (unsigned long)want,
		         strerror(errno));
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct lt_opts o;
	struct lt_target t;
	struct lt_result *r = NULL;
	struct lt_server srv;
	struct lt_load *l = NULL;
	struct event_base *base = NULL;
	struct interrupt in = {NULL, NULL, NULL};
	const struct lt_mix *mix;
	char err[1024], path[4096];
	bool match = false;
	int rc;

	if (argc == 2 && strcmp(argv[1], "--options-roff") == 0) {
		usage_roff(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--mixes-roff") == 0) {
		usage_roff_mixes(stdout);
		return 0;
	}
	rc = parse_args(&o, argc, argv, err, sizeof(err));
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	mix = rc == 0 ? lt_mix_find(o.mix) : NULL;
	if (rc == 0 && mix == NULL) {
		snprintf(err, sizeof(err), "unknown --mix \"%.80s\" (one of: mixed, read-heavy, category-read, "
		                           "stream.write, stream.get, category.get, sys.version)",
		         o.mix);
		rc = -1;
	}
	if (rc == 0)
		rc = lt_target_parse(&t, o.url, o.token, err, sizeof(err));
	if (rc == 0)
		rc = raise_fd_limit(o.connections, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "%s: %s (see --help)\n", LT_PROG, err);
		return 2;
	}
	if (o.output != NULL)
		rc = snprintf(path, sizeof(path), "%s", o.output);
	else if (o.profile_dir != NULL)
		rc = snprintf(path, sizeof(path), "%s/load-test-results.json", o.profile_dir);
	else
		rc = snprintf(path, sizeof(path), "load-test-results.json");
	if (rc < 0 || (size_t)rc >= sizeof(path)) {
		fprintf(stderr, "%s: the output path is too long (see --help)\n", LT_PROG);
		return 2;
	}
	if (o.prefill < 0)
		o.prefill = mix->prefill ? o.batch_size : 0;

	signal(SIGPIPE, SIG_IGN);
	rc = 1;
	memset(&srv, 0, sizeof(srv));
	if (lt_target_resolve(&t, err, sizeof(err)) != 0)
		goto fail;
	base = event_base_new();
	r = calloc(1, sizeof(*r));
	if (base == NULL || r == NULL || (l = lt_load_new(base, &o, mix, &t)) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (lt_load_connect(l, err, sizeof(err)) != 0)
		goto fail;
	if (o.prefill > 0) {
		if (!o.quiet)
			fprintf(stderr, "%s: filling %ld streams with %ld messages each\n", LT_PROG, o.streams,
			        o.prefill);
		if (lt_load_prefill(l, o.prefill, err, sizeof(err)) != 0)
			goto fail;
		r->prefill_writes = (uint64_t)o.prefill * (uint64_t)o.streams;
	}
	lt_server_before(base, &t, &o, &srv);
	in.l = l;
	in.r = r;
	in.ev = evsignal_new(base, SIGINT, on_sigint, &in);
	if (in.ev != NULL)
		evsignal_add(in.ev, NULL);
	if (!o.quiet)
		fprintf(stderr, "%s: %s mix, %ld connections, %.1f s against %s\n", LT_PROG, mix->name, o.connections,
		        o.duration_s, o.url);
	lt_load_run(l, r);
	if (in.ev != NULL)
		event_free(in.ev);
	lt_server_after(base, &t, &o, &srv);
	rc = lt_report(&o, mix, r, &srv, path, &match) != 0 || r->errors > 0 ? 1 : 0;
	goto out;
fail:
	fprintf(stderr, "%s: %s\n", LT_PROG, err);
out:
	lt_server_clear(&srv);
	lt_load_free(l);
	free(r);
	if (base != NULL)
		event_base_free(base);
	return rc;
}
