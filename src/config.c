/*
 * The option table and its parsers. Every option is written once, here,
 * in alphabetical order; everything else (flags, environment, config file,
 * --help, the man page list) is derived from this table.
 */
#include "autoconf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "shm.h"

#define OFF(f) offsetof(struct config, f)

const struct option_def config_options[] = {
	{"access-log", OPT_STR, "off", true, OFF(access_log), 0, 0,
	 "access log: off, - (standard error) or a file (reopened on SIGUSR1 and SIGHUP); one line per request"},
	{"admin-listen", OPT_STR, NULL, false, OFF(admin_listen), 0, 0,
	 "ADDR:PORT of a second listener for /metrics, /debug/*, /health and /version, without a token (off or empty: none, the default)"},
	{"admin-listen-any", OPT_BOOL, "false", false, OFF(admin_listen_any), 0, 0,
	 "allow --admin-listen on an address other than loopback"},
	{"config", OPT_STR, NULL, false, OFF(config_file), 0, 0,
	 "config file of name = value lines (flags and environment override it)"},
	{"data-dir", OPT_STR, NULL, false, OFF(data_dir), 0, 0,
	 "directory of the embedded store's files (needed with sqlite://)"},
	{"db-idle-timeout", OPT_INT, "60", false, OFF(db_idle_timeout), 1, 86400,
	 "seconds an extra database connection (beyond the first of a worker) may stay idle before it closes"},
	{"db-pool-size", OPT_INT, "4", false, OFF(db_pool_size), 1, 64,
	 "database connections per worker at most, opened on demand (one stays open); a server holds up to "
	 "workers x this + 1 (the write listener): keep the sum over all servers under PostgreSQL's max_connections"},
	{"db-type", OPT_STR, NULL, false, OFF(db_type), 0, 0,
	 "accepted for compatibility and ignored: --db-url's scheme picks the store (postgres:// or sqlite://)"},
	{"db-url", OPT_STR, NULL, false, OFF(db_url), 0, 0,
	 "the store: postgres://user:pass@host:port/db (PostgreSQL), or sqlite://FILE (the embedded store, "
	 "FILE in --data-dir)"},
	{"group", OPT_STR, NULL, false, OFF(group), 0, 0,
	 "group to run as after binding (with --user; default: the user's group)"},
	{"idle-timeout", OPT_INT, "120", false, OFF(idle_timeout), 1, 86400,
	 "seconds a keep-alive connection may stay idle between requests"},
	{"listen", OPT_STR, "0.0.0.0", false, OFF(listen), 0, 0,
	 "address to listen on (IPv4 or IPv6 literal)"},
	{"log-file", OPT_STR, NULL, false, OFF(log_file), 0, 0,
	 "append log lines to this file (reopened on SIGUSR1 and SIGHUP) instead of stderr"},
	{"log-format", OPT_STR, "console", true, OFF(log_format), 0, 0,
	 "log format: console or json"},
	{"log-level", OPT_STR, "info", true, OFF(log_level), 0, 0,
	 "log level: debug, info, warn or error"},
	{"max-batch-size", OPT_INT, "10000", false, OFF(max_batch_size), 1, 1000000,
	 "largest batchSize a read may ask for (-1, unlimited, is always allowed)"},
	{"max-body", OPT_SIZE, "16MiB", false, OFF(max_body), 1024, CONFIG_BODY_MAX,
	 "largest request body (413 BODY_TOO_LARGE above it; at most 1GiB)"},
	{"max-connections", OPT_INT, "10000", false, OFF(max_connections), 1, 1000000,
	 "open connections per worker (503 TOO_MANY_CONNECTIONS above it)"},
	{"max-header-size", OPT_SIZE, "64KiB", false, OFF(max_header_size), 1024, 1024 * 1024,
	 "largest request head: request line and header fields (431 HEADERS_TOO_LARGE above it)"},
	{"max-message", OPT_SIZE, "1MiB", false, OFF(max_message), 64, CONFIG_BODY_MAX,
	 "largest data+metadata of one message (413 MESSAGE_TOO_LARGE above it)"},
	{"max-namespaces", OPT_INT, "4096", false, OFF(max_namespaces), 1, SHM_NS_LIMIT_MAX,
	 "namespaces the server holds, default included (507 NAMESPACE_LIMIT above it; a bigger registry"
	 " refuses to start)"},
	{"max-subscriptions", OPT_INT, "10000", false, OFF(max_subscriptions), 1, 100000000,
	 "live subscriptions (GET /subscribe) per namespace over all workers (429 above it)"},
	{"pg-notify", OPT_BOOL, "true", false, OFF(pg_notify), 0, 0,
	 "PostgreSQL: notify writes to the other servers on the same database (LISTEN/NOTIFY)"},
	{"pidfile", OPT_STR, NULL, false, OFF(pidfile), 0, 0,
	 "write the supervisor's pid here; refuse to start while it names a live eventodb"},
	{"port", OPT_INT, "8080", false, OFF(port), 0, 65535,
	 "TCP port to listen on"},
	{"profile-dir", OPT_STR, NULL, false, OFF(profile_dir), 0, 0,
	 "directory for CPU profiles (/debug/pprof/profile, SIGUSR2); default: $STATE_DIRECTORY/profiles "
	 "under systemd, else $TMPDIR/eventodb-profiles-UID (or /tmp/...)"},
	{"profile-seconds", OPT_INT, "30", false, OFF(profile_seconds), 1, 300,
	 "length of the CPU profile every worker takes on SIGUSR2"},
	{"read-timeout", OPT_INT, "30", false, OFF(read_timeout), 1, 3600,
	 "seconds to receive a request head, and most between two pieces of its body (408 after)"},
	{"shutdown-timeout", OPT_INT, "10", false, OFF(shutdown_timeout), 0, 3600,
	 "seconds a graceful shutdown (SIGTERM) may take before workers are killed"},
	{"sse-buffer", OPT_SIZE, "64KiB", false, OFF(sse_buffer), 1024, (int64_t)1 << 30,
	 "output a slow subscriber may have pending; beyond it pokes coalesce to the newest per stream"},
	{"sse-keepalive", OPT_INT, "15", false, OFF(sse_keepalive), 1, 3600,
	 "seconds between \": keepalive\" comments on subscriptions"},
	{"syslog", OPT_BOOL, "false", false, OFF(syslog), 0, 0,
	 "log to syslog (facility daemon) instead of stderr"},
	{"test-mode", OPT_BOOL, "false", false, OFF(test_mode), 0, 0,
	 "test mode: optional auth, namespaces created on first use; the embedded store in a private temporary "
	 "directory unless --db-url is given; 127.0.0.1 unless --listen is given"},
	{"token", OPT_STR, NULL, false, OFF(token), 0, 0,
	 "token of the default (admin) namespace"},
	{"user", OPT_STR, NULL, false, OFF(user), 0, 0,
	 "user to run as after binding the listener (when started as root)"},
	{"workers", OPT_INT, "0", false, OFF(workers), 0, 256,
	 "worker processes (0 = one per online CPU)"},
	{"write-batch-bytes", OPT_SIZE, "1MiB", false, OFF(write_batch_bytes), 1024, (int64_t)1 << 30,
	 "most message bytes (data, metadata, names) in one write batch; a larger message goes alone"},
	{"write-batch-max", OPT_INT, "64", false, OFF(write_batch_max), 1, 1024,
	 "most stream.writes committed together in one transaction (1 turns write batching off)"},
	{"write-ring-size", OPT_SIZE, "4MiB", false, OFF(write_ring_size), 4096, (int64_t)1 << 30,
	 "shared ring of recent writes that feeds subscribers on every worker"},
	{NULL, 0, NULL, false, 0, 0, 0, NULL},
};

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
config_parse_size(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mul = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	if (*end != '\0') {
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0 || strcasecmp(end, "kib") == 0)
			mul = 1024;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0 || strcasecmp(end, "mib") == 0)
			mul = 1024 * 1024;
		else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gb") == 0 || strcasecmp(end, "gib") == 0)
			mul = 1024 * 1024 * 1024;
		else
			return -1;
	}
	if (v > INT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int
parse_bool(const char *s, bool *out)
{
	/* Go's strconv.ParseBool set. */
	static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True", "yes", "on", NULL};
	static const char *const f[] = {"0", "f", "F", "false", "FALSE", "False", "no", "off", NULL};

	for (int i = 0; t[i]; i++)
		if (strcmp(s, t[i]) == 0)
			return *out = true, 0;
	for (int i = 0; f[i]; i++)
		if (strcmp(s, f[i]) == 0)
			return *out = false, 0;
	return -1;
}

/* The options whose value is one of a fixed set (any case), checked
 * wherever the value comes from: flag, environment, file, reload. */
static const struct {
	size_t offset;
	const char *choices;
} option_choices[] = {
    {OFF(log_format), "console|json"},
    {OFF(log_level), "debug|info|warn|error"},
};

static const char *
choices_of(const struct option_def *o)
{
	for (size_t i = 0; i < sizeof(option_choices) / sizeof(option_choices[0]); i++)
		if (option_choices[i].offset == o->offset)
			return option_choices[i].choices;
	return NULL;
}

/* val is one of the '|'-separated choices (case-insensitive). */
static bool
is_choice(const char *choices, const char *val)
{
	size_t n = strlen(val);

	for (const char *p = choices; *p != '\0';) {
		size_t len = strcspn(p, "|");
		if (len == n && n > 0 && strncasecmp(p, val, n) == 0)
			return true;
		p += len + (p[len] == '|');
	}
	return false;
}

/* Sets one option from text. source names where it came from, for errors. */
static int
set_option(struct config *cfg, const struct option_def *o, const char *val, const char *source,
           char *err, size_t errlen)
{
	char *base = (char *)cfg + o->offset;
	int64_t v = 0;
	char *end;

	switch (o->type) {
	case OPT_STR: {
		char **dst = (char **)base;
		const char *choices = choices_of(o);
		char *copy;
		if (choices != NULL && !is_choice(choices, val)) {
			char list[128];
			size_t n = 0;
			for (const char *p = choices; *p != '\0' && n + 3 < sizeof(list); p++) {
				if (*p == '|')
					list[n++] = ',', list[n++] = ' ';
				else
					list[n++] = *p;
			}
			list[n] = '\0';
			return errf(err, errlen, "%s: invalid value \"%s\" for %s: must be one of %s", source, val, o->name,
			            list), -1;
		}
		copy = strdup(val);
		if (copy == NULL)
			return errf(err, errlen, "out of memory"), -1;
		free(*dst);
		*dst = copy;
		return 0;
	}
	case OPT_BOOL:
		if (parse_bool(val, (bool *)base) != 0)
			return errf(err, errlen, "%s: invalid boolean value \"%s\" for %s", source, val, o->name), -1;
		return 0;
	case OPT_INT:
		errno = 0;
		v = strtoll(val, &end, 10);
		if (end == val || *end != '\0' || errno != 0)
			return errf(err, errlen, "%s: invalid value \"%s\" for %s: not an integer", source, val, o->name), -1;
		break;
	case OPT_SIZE:
		if (config_parse_size(val, &v) != 0)
			return errf(err, errlen, "%s: invalid value \"%s\" for %s: not a size (e.g. 4096, 64k, 16MiB)",
			            source, val, o->name), -1;
		break;
	}
	if (v < o->min || v > o->max)
		return errf(err, errlen, "%s: invalid value \"%s\" for %s: must be between %lld and %lld", source, val,
		            o->name, (long long)o->min, (long long)o->max), -1;
	*(int64_t *)base = v;
	return 0;
}

static const struct option_def *
find_option(const char *name, size_t len)
{
	for (const struct option_def *o = config_options; o->name; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

/* EVENTODB_DB_URL for db-url. */
static void
env_name(const char *opt, char *out, size_t outlen)
{
	size_t j = (size_t)snprintf(out, outlen, "EVENTODB_");
	for (const char *p = opt; *p && j + 1 < outlen; p++)
		out[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	out[j] = '\0';
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static bool
flagged(const struct config *cfg, const struct option_def *o)
{
	size_t idx = (size_t)(o - config_options);

	return idx < 64 && (cfg->flag_set >> idx & 1);
}

/* On reload, a value that is not applied (a flag given on the command line
 * wins, or the option cannot change at run time) is still checked, as at
 * start-up: a bad one fails the reload (-1, err set). A changed option that
 * cannot change at run time is reported, not applied. */
static int
note_ignored(struct config *cfg, const struct option_def *o, const char *val, const char *source, char *err,
             size_t errlen)
{
	struct config tmp;
	bool differs;

	if (o->offset == OFF(config_file))
		return 0;
	memset(&tmp, 0, sizeof(tmp));
	if (set_option(&tmp, o, val, source, err, errlen) != 0)
		return -1;
	if (flagged(cfg, o)) {
		if (o->type == OPT_STR)
			free(*(char **)((char *)&tmp + o->offset));
		return 0;
	}
	if (o->type == OPT_STR) {
		const char *a = *(char **)((char *)cfg + o->offset), *b = *(char **)((char *)&tmp + o->offset);
		differs = a == NULL || strcmp(a, b) != 0;
		free(*(char **)((char *)&tmp + o->offset));
	} else if (o->type == OPT_BOOL) {
		differs = *(bool *)((char *)cfg + o->offset) != *(bool *)((char *)&tmp + o->offset);
	} else {
		differs = *(int64_t *)((char *)cfg + o->offset) != *(int64_t *)((char *)&tmp + o->offset);
	}
	if (differs)
		log_warn("reload: %s changed (%s) but only takes effect after a restart; ignored", o->name, source);
	return 0;
}

/* Reads name = value lines; '#' starts a comment; values may be "quoted". */
static int
read_file(struct config *cfg, const char *path, bool reload_only, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int lineno = 0;

	if (f == NULL)
		return errf(err, errlen, "cannot open config file %s: %s", path, strerror(errno)), -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p, *eq, *name, *val, src[64];
		const struct option_def *o;

		lineno++;
		p = trim(line);
		if (*p == '\0' || *p == '#' || *p == ';')
			continue;
		eq = strchr(p, '=');
		if (eq == NULL) {
			errf(err, errlen, "%s:%d: expected name = value", path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		name = trim(p);
		val = trim(eq + 1);
		if (val[0] == '"' && strlen(val) >= 2 && val[strlen(val) - 1] == '"') {
			val[strlen(val) - 1] = '\0';
			val++;
		}
		for (char *q = name; *q; q++)
			if (*q == '_')
				*q = '-';
		o = find_option(name, strlen(name));
		if (o == NULL || o->offset == OFF(config_file)) {
			errf(err, errlen, "%s:%d: unknown option \"%s\"", path, lineno, name);
			fclose(f);
			return -1;
		}
		snprintf(src, sizeof(src), "%s:%d", path, lineno);
		if (reload_only && (flagged(cfg, o) || !o->reloadable)) {
			if (note_ignored(cfg, o, val, src, err, errlen) != 0) {
				fclose(f);
				return -1;
			}
			continue;
		}
		if (set_option(cfg, o, val, src, err, errlen) != 0) {
			fclose(f);
			return -1;
		}
		if (o->offset == OFF(listen))
			cfg->listen_given = true;
	}
	fclose(f);
	return 0;
}

static int
read_env(struct config *cfg, bool reload_only, char *err, size_t errlen)
{
	char name[64];

	for (const struct option_def *o = config_options; o->name; o++) {
		const char *v;
		char tmp[256];

		env_name(o->name, name, sizeof(name));
		v = getenv(name);
		if (v == NULL || *v == '\0')
			continue;
		if (reload_only && (flagged(cfg, o) || !o->reloadable)) {
			/* (a bad number keeps the default, as at start-up) */
			if (note_ignored(cfg, o, v, name, tmp, sizeof(tmp)) != 0 && o->type != OPT_INT)
				return errf(err, errlen, "%s", tmp), -1;
			continue;
		}
		/* Like the reference server, a bad number in the environment keeps the default. */
		if (set_option(cfg, o, v, name, tmp, sizeof(tmp)) != 0) {
			if (o->type == OPT_INT)
				continue;
			return errf(err, errlen, "%s", tmp), -1;
		}
		if (o->offset == OFF(listen))
			cfg->listen_given = true;
	}
	return 0;
}

int
config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	const char *file = getenv("EVENTODB_CONFIG");

	memset(cfg, 0, sizeof(*cfg));
	for (const struct option_def *o = config_options; o->name; o++)
		if (o->def != NULL && set_option(cfg, o, o->def, "default", err, errlen) != 0)
			return -1;

	/* The config file name itself comes from the flags or the environment. */
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		while (*a == '-')
			a++;
		if (strncmp(a, "config=", 7) == 0)
			file = a + 7;
		else if (strcmp(a, "config") == 0 && i + 1 < argc)
			file = argv[i + 1];
	}
	if (file != NULL && *file != '\0') {
		if (read_file(cfg, file, false, err, errlen) != 0)
			return -1;
		cfg->config_file = strdup(file);
	}
	if (read_env(cfg, false, err, errlen) != 0)
		return -1;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *val = NULL;
		const struct option_def *o;

		if (a[0] != '-' || a[1] == '\0')
			return errf(err, errlen, "unexpected argument \"%s\"", a), -1;
		name = a + (a[1] == '-' ? 2 : 1);
		eq = strchr(name, '=');
		o = find_option(name, eq ? (size_t)(eq - name) : strlen(name));
		if (o == NULL)
			return errf(err, errlen, "flag provided but not defined: %s", a), -1;
		if (eq != NULL) {
			val = eq + 1;
		} else if (o->type == OPT_BOOL) {
			val = "true";
		} else {
			if (i + 1 >= argc)
				return errf(err, errlen, "flag needs an argument: %s", a), -1;
			val = argv[++i];
		}
		if (o->offset == OFF(config_file))
			continue; /* already read */
		if (set_option(cfg, o, val, a, err, errlen) != 0)
			return -1;
		if (o - config_options < 64)
			cfg->flag_set |= (uint64_t)1 << (o - config_options);
		if (o->offset == OFF(listen))
			cfg->listen_given = true;
	}
	return 0;
}

int
config_reload(struct config *cfg, char *err, size_t errlen)
{
	struct config next = *cfg;
	int rc = 0;

	/* read into a copy, take it only when every value is good */
	for (const struct option_def *o = config_options; o->name; o++) {
		char **p = (char **)((char *)&next + o->offset);
		if (o->type == OPT_STR && *p != NULL && (*p = strdup(*p)) == NULL)
			rc = -1;
	}
	if (rc != 0)
		errf(err, errlen, "out of memory");
	else if (next.config_file != NULL && read_file(&next, next.config_file, true, err, errlen) != 0)
		rc = -1;
	else if (read_env(&next, true, err, errlen) != 0)
		rc = -1;
	for (const struct option_def *o = config_options; o->name; o++) {
		char *dst = (char *)cfg + o->offset, *src = (char *)&next + o->offset;
		if (rc == 0 && o->reloadable) {
			if (o->type == OPT_STR) {
				free(*(char **)dst);
				*(char **)dst = *(char **)src;
				*(char **)src = NULL;
			} else {
				memcpy(dst, src, o->type == OPT_BOOL ? sizeof(bool) : sizeof(int64_t));
			}
		}
	}
	config_free(&next);
	return rc;
}

void
config_free(struct config *cfg)
{
	for (const struct option_def *o = config_options; o->name; o++)
		if (o->type == OPT_STR) {
			char **p = (char **)((char *)cfg + o->offset);
			free(*p);
			*p = NULL;
		}
}

void
config_usage(FILE *out)
{
	char env[64], flag[64];

	fprintf(out, "Options (flag > environment > config file > default):\n");
	for (const struct option_def *o = config_options; o->name; o++) {
		const char *arg = o->type == OPT_BOOL ? "" : o->type == OPT_STR ? " STRING" :
		                  o->type == OPT_SIZE ? " SIZE" : " N";
		env_name(o->name, env, sizeof(env));
		snprintf(flag, sizeof(flag), "--%s%s", o->name, arg);
		fprintf(out, "  %-26s %s\n  %-26s   env %s", flag, o->help, "", env);
		if (o->def != NULL)
			fprintf(out, ", default %s", o->def);
		fprintf(out, "%s\n", o->reloadable ? ", reloaded on SIGHUP" : "");
	}
}

/* Writes text for roff: a backslash becomes \e, a dash that starts a word
 * (--user, -1) a minus sign \-, so the page shows what is typed; a line
 * that starts with . or ' would be read as a request. */
static void
roff_text(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (const char *p = s; *p; p++) {
		if (*p == '\\')
			fputs("\\e", out);
		else if (*p == '-' && (p == s || p[-1] == ' ' || p[-1] == '(' || p[-1] == '-'))
			fputs("\\-", out);
		else
			fputc(*p, out);
	}
}

/* An option name with every dash as a minus sign (data\-dir). */
static void
roff_name(FILE *out, const char *name)
{
	for (const char *p = name; *p; p++)
		if (*p == '-')
			fputs("\\-", out);
		else
			fputc(*p, out);
}

void
config_usage_roff(FILE *out, bool file_syntax)
{
	char env[64];

	for (const struct option_def *o = config_options; o->name; o++) {
		const char *arg = o->type == OPT_BOOL ? "bool" : o->type == OPT_STR ? "string" :
		                  o->type == OPT_SIZE ? "size" : "n";

		if (file_syntax && o->offset == OFF(config_file))
			continue; /* a config file cannot name another one */
		env_name(o->name, env, sizeof(env));
		/* The tag: the name in bold, a space, the argument in italics.
		 * A flag that is a boolean needs no argument (--name is --name=true). */
		fputs(".TP\n", out);
		if (file_syntax) {
			fputs("\\fB", out);
			roff_name(out, o->name);
			fprintf(out, "\\fR = \\fI%s\\fR\n", arg);
		} else {
			fputs("\\fB\\-\\-", out);
			roff_name(out, o->name);
			if (o->type == OPT_BOOL)
				fprintf(out, "\\fR[\\fB=\\fI%s\\fR]\n", arg);
			else
				fprintf(out, "\\fR \\fI%s\\fR\n", arg);
		}
		roff_text(out, o->help);
		/* \% keeps the long variable name from being hyphenated. */
		fprintf(out, ".\nEnvironment: \\fB\\%%%s\\fR.", env);
		if (o->def != NULL) {
			fputs(" Default: \\fB", out);
			roff_text(out, o->def);
			fputs("\\fR.", out);
		}
		if (o->reloadable)
			fprintf(out, " Reloaded on SIGHUP.");
		fprintf(out, "\n");
	}
}

void
config_usage_conf(FILE *out)
{
	for (const struct option_def *o = config_options; o->name; o++) {
		if (o->offset == OFF(config_file))
			continue;
		fprintf(out, "\n# %s.%s\n#%s = %s\n", o->help, o->reloadable ? " Reloaded on SIGHUP." : "", o->name,
		        o->def != NULL ? o->def : "");
	}
}
