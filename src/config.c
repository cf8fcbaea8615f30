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

#define OFF(f) offsetof(struct config, f)

const struct option_def config_options[] = {
	{"config", OPT_STR, NULL, false, OFF(config_file), 0, 0,
	 "config file of name = value lines (flags and environment override it)"},
	{"data-dir", OPT_STR, NULL, false, OFF(data_dir), 0, 0,
	 "directory for the embedded store's files"},
	{"db-idle-timeout", OPT_INT, "60", false, OFF(db_idle_timeout), 1, 86400,
	 "seconds an extra database connection (beyond the first of a worker) may stay idle before it closes"},
	{"db-pool-size", OPT_INT, "4", false, OFF(db_pool_size), 1, 64,
	 "database connections per worker at most, opened on demand (one stays open); a server holds up to "
	 "workers x this + 1 (the write listener): keep the sum over all servers under PostgreSQL's max_connections"},
	{"db-type", OPT_STR, NULL, false, OFF(db_type), 0, 0,
	 "accepted for compatibility; only plain PostgreSQL is supported"},
	{"db-url", OPT_STR, NULL, false, OFF(db_url), 0, 0,
	 "database URL: postgres://user:pass@host:port/db"},
	{"group", OPT_STR, NULL, false, OFF(group), 0, 0,
	 "group to run as after binding (with --user; default: the user's group)"},
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
	{"max-body", OPT_SIZE, "16MiB", false, OFF(max_body), 1024, (int64_t)1 << 32,
	 "largest request body (413 BODY_TOO_LARGE above it)"},
	{"max-message", OPT_SIZE, "1MiB", false, OFF(max_message), 64, (int64_t)1 << 32,
	 "largest data+metadata of one message (413 MESSAGE_TOO_LARGE above it)"},
	{"max-subscriptions", OPT_INT, "10000", false, OFF(max_subscriptions), 1, 100000000,
	 "live subscriptions (GET /subscribe) per namespace over all workers (429 above it)"},
	{"pg-notify", OPT_BOOL, "true", false, OFF(pg_notify), 0, 0,
	 "PostgreSQL: notify writes to the other servers on the same database (LISTEN/NOTIFY)"},
	{"pidfile", OPT_STR, NULL, false, OFF(pidfile), 0, 0,
	 "write the supervisor's pid here; refuse to start while it names a live eventodb"},
	{"port", OPT_INT, "8080", false, OFF(port), 0, 65535,
	 "TCP port to listen on"},
	{"shutdown-timeout", OPT_INT, "10", false, OFF(shutdown_timeout), 0, 3600,
	 "seconds a graceful shutdown (SIGTERM) may take before workers are killed"},
	{"sse-buffer", OPT_SIZE, "64KiB", false, OFF(sse_buffer), 1024, (int64_t)1 << 30,
	 "output a slow subscriber may have pending; beyond it pokes coalesce to the newest per stream"},
	{"sse-keepalive", OPT_INT, "15", false, OFF(sse_keepalive), 1, 3600,
	 "seconds between \": keepalive\" comments on subscriptions"},
	{"syslog", OPT_BOOL, "false", false, OFF(syslog), 0, 0,
	 "log to syslog (facility daemon) instead of stderr"},
	{"test-mode", OPT_BOOL, "false", false, OFF(test_mode), 0, 0,
	 "test mode: optional auth, namespaces created on first use"},
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
		char *copy = strdup(val);
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

/* On reload, a changed option that cannot change at run time is reported,
 * not applied (flags given on the command line still win over files). */
static void
note_ignored(struct config *cfg, const struct option_def *o, const char *val, const char *source)
{
	struct config tmp;
	char err[256];
	bool differs;

	if (o->offset == OFF(config_file) || flagged(cfg, o))
		return;
	memset(&tmp, 0, sizeof(tmp));
	if (set_option(&tmp, o, val, source, err, sizeof(err)) != 0) {
		log_warn("reload: %s", err);
		return;
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
		if (reload_only && flagged(cfg, o))
			continue;
		if (reload_only && !o->reloadable) {
			note_ignored(cfg, o, val, src);
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
		if (reload_only && flagged(cfg, o))
			continue;
		if (reload_only && !o->reloadable) {
			note_ignored(cfg, o, v, name);
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
	if (cfg->config_file != NULL && read_file(cfg, cfg->config_file, true, err, errlen) != 0)
		return -1;
	return read_env(cfg, true, err, errlen);
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

void
config_usage_roff(FILE *out)
{
	char env[64];

	for (const struct option_def *o = config_options; o->name; o++) {
		const char *arg = o->type == OPT_BOOL ? "" : o->type == OPT_STR ? " \\fIstring\\fR" :
		                  o->type == OPT_SIZE ? " \\fIsize\\fR" : " \\fIn\\fR";
		env_name(o->name, env, sizeof(env));
		fprintf(out, ".TP\n.BR \\-\\-%s%s\n%s.\nEnvironment: \\fB%s\\fR.", o->name, arg, o->help, env);
		if (o->def != NULL)
			fprintf(out, " Default: \\fB%s\\fR.", o->def);
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
