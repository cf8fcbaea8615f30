/*
 * Options: one table drives flag parsing, EVENTODB_* environment variables,
 * the config file, --help with live defaults and the man page's option list.
 * Precedence: flag > environment > config file > default.
 */
#ifndef EVENTODB_CONFIG_H
#define EVENTODB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest --max-body and --max-message: a body's length goes to json-c
 * as an int, so it must stay well below INT_MAX. */
#define CONFIG_BODY_MAX ((int64_t)1 << 30)

struct config {
	char *access_log;
	char *admin_listen;
	bool admin_listen_any;
	char *config_file;
	char *data_dir;
	char *group;
	int64_t idle_timeout;
	char *db_type;
	char *db_url;
	int64_t db_idle_timeout;
	int64_t db_pool_size;
	char *listen;
	char *log_file;
	char *log_format;
	char *log_level;
	int64_t max_batch_size;
	int64_t max_body;
	int64_t max_connections;
	int64_t max_header_size;
	int64_t max_message;
	int64_t max_namespaces;
	int64_t max_subscriptions;
	bool pg_notify;
	char *pidfile;
	int64_t port;
	char *profile_dir;
	int64_t profile_seconds;
	int64_t read_timeout;
	int64_t shutdown_timeout;
	int64_t sse_buffer;
	int64_t sse_keepalive;
	bool syslog;
	bool test_mode;
	char *token;
	char *user;
	int64_t workers;
	int64_t write_batch_bytes;
	int64_t write_batch_max;
	int64_t write_ring_size;
	/* set by parsing: which options were given explicitly (any source) */
	bool listen_given;
	uint64_t flag_set; /* bit i: config_options[i] was given as a flag */
};

enum opt_type { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL };

struct option_def {
	const char *name;      /* flag name without dashes, e.g. "db-url" */
	enum opt_type type;
	const char *def;       /* default as a string; NULL = none */
	bool reloadable;       /* re-read on SIGHUP */
	size_t offset;         /* into struct config */
	int64_t min, max;      /* for OPT_INT / OPT_SIZE */
	const char *help;
};

extern const struct option_def config_options[];

/* Fills cfg from defaults, the config file, the environment and argv (argv[0]
 * is the first flag, not the program name). Returns 0, or -1 with a message
 * in err (bad flag, bad value: exit code 2). */
int config_parse(struct config *cfg, int argc, char **argv, char *err, size_t errlen);
/* Re-reads reloadable options from the config file and environment (SIGHUP). */
int config_reload(struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);
/* The option list for --help, with the defaults now in force. */
void config_usage(FILE *out);
/* The option list as man page roff (eventodb options-roff): as flags
 * (--name arg) for eventodb(8), or as file lines (name = arg) for
 * eventodb.conf(5) when file_syntax is set. */
void config_usage_roff(FILE *out, bool file_syntax);
/* Every option as a commented config file line with its default. */
void config_usage_conf(FILE *out);
/* Parses "16MiB", "1m", "4096", "2k" style sizes; -1 on error. */
int config_parse_size(const char *s, int64_t *out);

#endif
