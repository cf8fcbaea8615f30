/*
 * `eventodb import` (SPEC 7.3): streams an NDJSON file (or stdin, optionally
 * gzip-compressed) to POST /import as a chunked body and reports the
 * server's events as they come. A second thread sends the body while this
 * one reads the events, so progress shows during the upload and an error
 * stops the command at once.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "evlib.h"

#define IMPORT_CHUNK (64 * 1024)

struct upload {
	struct cli_conn *conn;
	int fd;
	gzFile gz;
	unsigned char *first; /* bytes read while checking the gzip header */
	int first_len;
	char err[512]; /* set when reading the input failed */
};

static const char *f_url, *f_token, *f_input;
static bool f_gzip, f_force;
static bool progress_shown; /* a "\rImported: ..." line is open */

static const struct cli_flag import_flags[] = {
    {"force", CLI_BOOL, "Clear existing data before import (destructive!)", NULL, &f_force},
    {"gzip", CLI_BOOL, "Decompress input with gzip", NULL, &f_gzip},
    {"input", CLI_STR, "Input file path (default: stdin)", &f_input, NULL},
    {"token", CLI_STR, "Namespace token (required)", &f_token, NULL},
    {"url", CLI_STR, "EventoDB server URL (required)", &f_url, NULL},
    {NULL, CLI_STR, NULL, NULL, NULL},
};

static void
usage(FILE *out)
{
	fprintf(out, "\nUsage: eventodb import [OPTIONS]\n\nImport events from NDJSON file to EventoDB.\n\nOptions:\n");
	cli_flags_usage(out, import_flags);
	fprintf(out, "\nExamples:\n"
	             "  eventodb import --url http://localhost:8080 --token $TOKEN --input backup.ndjson\n"
	             "  eventodb import --url http://localhost:8080 --token $TOKEN --gzip --input backup.ndjson.gz\n"
	             "  eventodb import --url http://localhost:8080 --token $TOKEN --force --input backup.ndjson\n"
	             "  cat backup.ndjson | eventodb import --url http://localhost:8080 --token $TOKEN\n");
}

/* The answer to the --force question, read a byte at a time so that stdin
 * can still carry the data after it. */
static bool
confirmed(void)
{
	char line[64];
	size_t n = 0;
	char c;

	fprintf(stderr, "WARNING: --force will DELETE ALL EXISTING DATA in the namespace before import.\n"
	                "This action cannot be undone.\n\n"
	                "Are you sure you want to continue? [y/N]: ");
	fflush(stderr);
	while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n')
		if (n + 1 < sizeof(line))
			line[n++] = c;
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\r' || line[n - 1] == '\t'))
		n--;
	line[n] = '\0';
	return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

static int
read_input(struct upload *u, unsigned char *buf, int cap)
{
	if (u->first_len > 0) {
		int n = u->first_len < cap ? u->first_len : cap;

		memcpy(buf, u->first, (size_t)n);
		memmove(u->first, u->first + n, (size_t)(u->first_len - n));
		u->first_len -= n;
		return n;
	}
	if (u->gz != NULL) {
		int n = gzread(u->gz, buf, (unsigned)cap);
		if (n < 0) {
			int zerr;
			snprintf(u->err, sizeof(u->err), "failed to read input: %s", gzerror(u->gz, &zerr));
		}
		return n;
	}
	for (;;) {
		ssize_t n = read(u->fd, buf, (size_t)cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			snprintf(u->err, sizeof(u->err), "failed to read input: %s", strerror(errno));
		return (int)n;
	}
}

/* The body, as HTTP chunks. */
static void *
uploader(void *arg)
{
	struct upload *u = arg;
	unsigned char *buf = malloc(IMPORT_CHUNK + 32);
	char head[32];
	int n;

	if (buf == NULL) {
		snprintf(u->err, sizeof(u->err), "out of memory");
		shutdown(u->conn->fd, SHUT_RDWR);
		return NULL;
	}
	while ((n = read_input(u, buf, IMPORT_CHUNK)) > 0) {
		int hl = snprintf(head, sizeof(head), "%x\r\n", n);

		if (cli_send(u->conn, head, (size_t)hl) != 0 || cli_send(u->conn, buf, (size_t)n) != 0 ||
		    cli_send(u->conn, "\r\n", 2) != 0)
			break; /* the server stopped reading: its answer says why */
	}
	if (n == 0)
		cli_send(u->conn, "0\r\n\r\n", 5);
	else if (n < 0) /* an unfinished body: the server drops it */
		shutdown(u->conn->fd, SHUT_RDWR);
	free(buf);
	return NULL;
}

/* One "data: {...}" event; 1 done, -1 error (message in err), 0 go on. */
static int
on_event(const char *json, size_t len, char *err, size_t errlen)
{
	json_object *ev = json_tokener_parse(json), *o;
	int rc = 0;

	(void)len;
	if (ev == NULL || !json_object_is_type(ev, json_type_object)) {
		fprintf(stderr, "Warning: failed to parse event: %s\n", json);
		json_object_put(ev);
		return 0;
	}
	if (json_object_object_get_ex(ev, "error", &o) && json_object_get_string_len(o) > 0) {
		json_object *msg = NULL, *line = NULL;

		json_object_object_get_ex(ev, "message", &msg);
		json_object_object_get_ex(ev, "line", &line);
		utf8_snprintf(err, errlen, "%s: %s (line %lld)", json_object_get_string(o),
		              msg ? json_object_get_string(msg) : "",
		              (long long)(line ? json_object_get_int64(line) : 0));
		rc = -1;
	} else if (json_object_object_get_ex(ev, "done", &o) && json_object_get_boolean(o)) {
		json_object *n = NULL, *el = NULL;

		int64_t k;

		json_object_object_get_ex(ev, "imported", &n);
		json_object_object_get_ex(ev, "elapsed", &el);
		k = n ? json_object_get_int64(n) : 0;
		fprintf(stderr, "\rImported: %lld %s in %s\n", (long long)k, cli_events(k),
		        el ? json_object_get_string(el) : "?");
		rc = 1;
	} else {
		json_object *n = NULL, *g = NULL;

		int64_t k;

		json_object_object_get_ex(ev, "imported", &n);
		json_object_object_get_ex(ev, "gpos", &g);
		k = n ? json_object_get_int64(n) : 0;
		fprintf(stderr, "\rImported: %lld %s (gpos: %lld)...", (long long)k, cli_events(k),
		        (long long)(g ? json_object_get_int64(g) : 0));
		progress_shown = true;
	}
	json_object_put(ev);
	return rc;
}

/* Puts prefix in front of the message in err. */
static void
prefix_err(char *err, size_t errlen, const char *prefix)
{
	size_t pl = strlen(prefix), el = strlen(err);

	if (pl + 1 >= errlen)
		return;
	if (pl + el + 1 > errlen)
		el = errlen - pl - 1;
	memmove(err + pl, err, el);
	memcpy(err, prefix, pl);
	err[pl + el] = '\0';
}

/* Reads the response; 0 when the import is done, -1 with err set. */
static int
read_events(struct cli_conn *c, char *err, size_t errlen)
{
	struct evbuffer *buf = evbuffer_new();
	struct cli_resp r;
	struct cli_body b;
	long n;
	int rc = -1;

	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cli_read_head(c, &r, err, errlen) != 0) {
		prefix_err(err, errlen, "failed to send request: ");
		goto out;
	}
	cli_body_init(&b, &r);
	if (r.status != 200) {
		while ((n = cli_read_body(c, &r, &b, buf, err, errlen)) > 0 && evbuffer_get_length(buf) < 65536)
			;
		utf8_snprintf(err, errlen, "server error (HTTP %d): %.*s", r.status, (int)evbuffer_get_length(buf),
		              (const char *)evbuffer_pullup(buf, -1));
		goto out;
	}
	for (;;) {
		struct evbuffer_ptr e;

		while ((e = evbuffer_search_eol(buf, NULL, NULL, EVBUFFER_EOL_LF)).pos >= 0) {
			size_t len = (size_t)e.pos;
			char *line = malloc(len + 1);

			if (line == NULL) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			evbuffer_remove(buf, line, len + 1);
			line[len] = '\0';
			if (len > 0 && line[len - 1] == '\r')
				line[--len] = '\0';
			if (strncmp(line, "data: ", 6) == 0) {
				int ev = on_event(line + 6, len - 6, err, errlen);
				free(line);
				if (ev != 0) {
					rc = ev > 0 ? 0 : -1;
					goto out;
				}
			} else {
				free(line);
			}
		}
		n = cli_read_body(c, &r, &b, buf, err, errlen);
		if (n < 0) {
			prefix_err(err, errlen, "failed to read response: ");
			goto out;
		}
		if (n == 0) {
			snprintf(err, errlen, "failed to read response: the server ended the import without a result");
			goto out;
		}
	}
out:
	evbuffer_free(buf);
	return rc;
}

int
cli_import_main(int argc, char **argv)
{
	struct cli_url url;
	struct cli_conn *conn = NULL;
	struct upload up;
	pthread_t thr;
	char err[1024], head[2048];
	int rc, hl;

	memset(&up, 0, sizeof(up));
	up.fd = -1;
	if (cli_start(import_flags, usage, argc, argv, &rc))
		return rc;
	if (cli_require_target(f_url, f_token, &url, err, sizeof(err)) != 0)
		goto fail;
	if (f_force && !confirmed()) {
		fprintf(stderr, "Import cancelled.\n");
		return 0;
	}
	if (f_input != NULL && *f_input != '\0') {
		up.fd = open(f_input, O_RDONLY | O_CLOEXEC);
		if (up.fd < 0) {
			snprintf(err, sizeof(err), "failed to open input file: %s", strerror(errno));
			goto fail;
		}
	} else {
		up.fd = dup(STDIN_FILENO);
	}
	if (f_gzip) {
		up.gz = gzdopen(up.fd, "rb");
		if (up.gz == NULL) {
			snprintf(err, sizeof(err), "failed to create gzip reader: out of memory");
			goto fail;
		}
		up.fd = -1;
		/* like Go's gzip.NewReader: the header must be there */
		up.first = malloc(IMPORT_CHUNK);
		if (up.first == NULL) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		up.first_len = gzread(up.gz, up.first, IMPORT_CHUNK);
		if (up.first_len < 0 || (up.first_len > 0 && gzdirect(up.gz))) {
			snprintf(err, sizeof(err), "failed to create gzip reader: gzip: invalid header");
			goto fail;
		}
	}
	conn = malloc(sizeof(*conn));
	if (conn == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (cli_connect(conn, &url, 0, err, sizeof(err)) != 0) {
		prefix_err(err, sizeof(err), "failed to send request: ");
		free(conn);
		conn = NULL;
		goto fail;
	}
	hl = snprintf(head, sizeof(head),
	              "POST %s/import%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: eventodb-import/" PACKAGE_VERSION
	              "\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-ndjson\r\n"
	              "Transfer-Encoding: chunked\r\n\r\n",
	              url.base, f_force ? "?force=true" : "", url.hostport, f_token);
	if (hl <= 0 || (size_t)hl >= sizeof(head) || cli_send(conn, head, (size_t)hl) != 0) {
		snprintf(err, sizeof(err), "failed to send request: %s", strerror(errno));
		goto fail;
	}
	up.conn = conn;
	if (pthread_create(&thr, NULL, uploader, &up) != 0) {
		snprintf(err, sizeof(err), "cannot start the upload");
		goto fail;
	}
	rc = read_events(conn, err, sizeof(err));
	if (rc == 0) {
		pthread_join(thr, NULL);
	} else {
		/* stop the upload; whatever it was doing */
		shutdown(conn->fd, SHUT_RDWR);
		pthread_join(thr, NULL);
		if (up.err[0] != '\0')
			snprintf(err, sizeof(err), "%s", up.err);
		goto fail;
	}
	cli_close(conn);
	free(conn);
	if (up.gz != NULL)
		gzclose(up.gz);
	if (up.fd >= 0)
		close(up.fd);
	free(up.first);
	return 0;
fail:
	fprintf(stderr, "%sError: %s\n", progress_shown ? "\n" : "", err);
	if (conn != NULL) {
		cli_close(conn);
		free(conn);
	}
	if (up.gz != NULL)
		gzclose(up.gz);
	if (up.fd >= 0)
		close(up.fd);
	free(up.first);
	return 1;
}
