/*
 * The backup commands, `eventodb export` and `eventodb import` (SPEC 7.2,
 * 7.3): blocking HTTP/1.1 clients of a running server, with the pieces they
 * share (flags in Go's syntax, URLs, a small socket client, Go-compatible
 * JSON output).
 */
#ifndef EVENTODB_CLI_H
#define EVENTODB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

struct evbuffer;

/* The commands: argv[0] is "export" / "import"; they return the exit code. */
int cli_export_main(int argc, char **argv);
int cli_import_main(int argc, char **argv);

/* ---- flags (Go's flag package: -x or --x, -x=v or -x v; bools -x or -x=false) */

enum cli_flag_type { CLI_STR, CLI_BOOL };

struct cli_flag {
	const char *name;
	enum cli_flag_type type;
	const char *help;
	const char **str; /* CLI_STR */
	bool *on;         /* CLI_BOOL */
};

/* Parses argv (argv[0] is the command). 0, 1 for -h/--help, or -1 with a
 * message in err. */
int cli_flags_parse(const struct cli_flag *flags, int argc, char **argv, char *err, size_t errlen);
void cli_flags_usage(FILE *out, const struct cli_flag *flags);
/* Every command's start: parses the flags; -h/--help prints usage on stdout
 * (*exit_code 0), a bad flag prints the error and where the help is on
 * stderr (*exit_code 2). Returns true when the command must stop with
 * *exit_code. */
bool cli_start(const struct cli_flag *flags, void (*usage)(FILE *), int argc, char **argv, int *exit_code);
/* "event" for 1, else "events": the progress lines count them. */
const char *cli_events(int64_t n);

/* ---- URLs and connections ------------------------------------------------ */

struct cli_url {
	char host[256];
	char port[8];
	char hostport[300]; /* for the Host header */
	char base[1024];    /* path prefix without a trailing '/' */
};

/* http://host[:port][/base]; 0, or -1 with a message in err. */
int cli_url_parse(const char *url, struct cli_url *u, char *err, size_t errlen);
/* --url and --token given, the URL parsed into u; 0, or -1 with err. */
int cli_require_target(const char *url, const char *token, struct cli_url *u, char *err, size_t errlen);

struct cli_conn {
	int fd;
	int timeout_s; /* 0: none */
	size_t off, len;
	char buf[64 * 1024];
};

/* Opens a connection; 0, or -1 with a message in err. */
int cli_connect(struct cli_conn *c, const struct cli_url *u, int timeout_s, char *err, size_t errlen);
void cli_close(struct cli_conn *c);
/* Sends everything; 0 or -1 (errno set). */
int cli_send(struct cli_conn *c, const void *p, size_t n);

/* A response head. */
struct cli_resp {
	int status;
	bool chunked;
	bool close;     /* Connection: close, or HTTP/1.0 */
	int64_t length; /* -1: until close (or chunked) */
};

/* Reads a response head; 0, or -1 with a message in err. */
int cli_read_head(struct cli_conn *c, struct cli_resp *r, char *err, size_t errlen);
/* Reads the next piece of the body into out (appended): > 0 bytes added, 0 at
 * the end of the body, -1 with a message in err. st tracks the framing. */
struct cli_body {
	int64_t left; /* Content-Length / current chunk bytes left */
	bool in_chunk, done;
};
void cli_body_init(struct cli_body *b, const struct cli_resp *r);
long cli_read_body(struct cli_conn *c, const struct cli_resp *r, struct cli_body *b, struct evbuffer *out, char *err,
                   size_t errlen);

/* ---- output --------------------------------------------------------------- */

/* JSON the way Go's encoding/json writes a decoded value: object keys sorted
 * byte-wise, strings escaped as Go does, floats in Go's shortest form.
 * Integers are written exactly (Go would round those beyond 2^53). */
void cli_json_go(struct evbuffer *b, json_object *o);
/* Go's strconv float64 formatting as encoding/json uses it ('f', or 'e' below
 * 1e-6 and from 1e21). out needs 32 bytes. */
void cli_go_float(double f, char *out, size_t cap);

#endif
