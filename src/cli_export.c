/*
 * `eventodb export` (SPEC 7.2): reads a namespace through category.get in
 * pages of 1000 and writes one NDJSON record per message, as the reference
 * does: key order id, stream, type, pos, gpos, data, meta, time; data and
 * meta re-encoded the way Go encodes them (so the output does not depend on
 * the store: PostgreSQL's jsonb and the embedded store's text give the same
 * bytes); time at the stored precision, microseconds with trailing zeros
 * trimmed (SPEC D22: the reference drops the fraction, so a backup lost it).
 * Time filters apply on this side.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "evlib.h"
#include "jsonnum.h"
#include "jsonw.h"

#define EXPORT_PAGE 1000
#define EXPORT_TIMEOUT 30 /* seconds per request, as the reference */

struct exporter {
	struct cli_url url;
	const char *token;
	struct cli_conn conn;
	bool connected;
	bool has_since, has_until;
	int64_t since_us, until_us;
	int fd;
	gzFile gz;
	struct evbuffer *out;
	int64_t exported;
	char err[2048];
};

static const char *f_url, *f_token, *f_categories, *f_since, *f_until, *f_output;
static bool f_gzip;

static const struct cli_flag export_flags[] = {
    {"categories", CLI_STR, "Comma-separated category list (optional, empty = all)", &f_categories, NULL},
    {"gzip", CLI_BOOL, "Compress output with gzip", NULL, &f_gzip},
    {"output", CLI_STR, "Output file path (default: stdout)", &f_output, NULL},
    {"since", CLI_STR, "Start date (inclusive, RFC3339 or YYYY-MM-DD)", &f_since, NULL},
    {"token", CLI_STR, "Namespace token (required)", &f_token, NULL},
    {"until", CLI_STR, "End date (exclusive, RFC3339 or YYYY-MM-DD)", &f_until, NULL},
    {"url", CLI_STR, "EventoDB server URL (required)", &f_url, NULL},
    {NULL, CLI_STR, NULL, NULL, NULL},
};

static void
usage(FILE *out)
{
	fprintf(out, "\nUsage: eventodb export [OPTIONS]\n\nExport events from EventoDB as NDJSON.\n\nOptions:\n");
	cli_flags_usage(out, export_flags);
	fprintf(out, "\nExamples:\n"
	             "  eventodb export --url http://localhost:8080 --token $TOKEN --output backup.ndjson\n"
	             "  eventodb export --url http://localhost:8080 --token $TOKEN --categories user,order --since "
	             "2025-01-01\n"
	             "  eventodb export --url http://localhost:8080 --token $TOKEN --gzip --output backup.ndjson.gz\n");
}

static int
flush_out(struct exporter *x)
{
	size_t n = evbuffer_get_length(x->out);
	const char *p = (const char *)evbuffer_pullup(x->out, -1);

	if (n == 0)
		return 0;
	if (x->gz != NULL) {
		if (gzwrite(x->gz, p, (unsigned)n) != (int)n) {
			snprintf(x->err, sizeof(x->err), "failed to write record: gzip write failed");
			return -1;
		}
	} else {
		while (n > 0) {
			ssize_t w = write(x->fd, p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				snprintf(x->err, sizeof(x->err), "failed to write record: %s", strerror(errno));
				return -1;
			}
			p += w;
			n -= (size_t)w;
		}
	}
	evbuffer_drain(x->out, evbuffer_get_length(x->out));
	return 0;
}

/* One message array [id, stream, type, pos, gpos, data, meta, time] as a
 * record line; false when it is not what category.get returns. */
static bool
write_record(struct exporter *x, json_object *m)
{
	json_object *f[8];
	int64_t t_us;
	char tbuf[RFC3339_BUFLEN];

	if (!json_object_is_type(m, json_type_array) || json_object_array_length(m) != 8)
		return false;
	for (int i = 0; i < 8; i++)
		f[i] = json_object_array_get_idx(m, (size_t)i);
	if (!json_object_is_type(f[7], json_type_string) ||
	    rfc3339_parse(json_object_get_string(f[7]), (size_t)json_object_get_string_len(f[7]), false, &t_us) != 0)
		return false;
	if (x->has_since && t_us < x->since_us)
		return true;
	if (x->has_until && t_us >= x->until_us)
		return true;
	rfc3339_format_us(t_us, tbuf);
	jw_lit(x->out, "{\"id\":");
	cli_json_go(x->out, f[0]);
	jw_lit(x->out, ",\"stream\":");
	cli_json_go(x->out, f[1]);
	jw_lit(x->out, ",\"type\":");
	cli_json_go(x->out, f[2]);
	jw_lit(x->out, ",\"pos\":");
	cli_json_go(x->out, f[3]);
	jw_lit(x->out, ",\"gpos\":");
	cli_json_go(x->out, f[4]);
	jw_lit(x->out, ",\"data\":");
	cli_json_go(x->out, f[5]);
	jw_lit(x->out, ",\"meta\":");
	cli_json_go(x->out, f[6]);
	jw_lit(x->out, ",\"time\":");
	jw_cstr(x->out, tbuf);
	jw_lit(x->out, "}\n");
	x->exported++;
	return true;
}

/* POST /rpc category.get; the parsed array in *res (caller puts it). */
static int
fetch(struct exporter *x, const char *category, int64_t position, json_object **res)
{
	struct evbuffer *req = evbuffer_new(), *body = evbuffer_new();
	struct cli_resp r;
	struct cli_body bs;
	char err[512];
	int rc = -1;
	long n;

	*res = NULL;
	if (req == NULL || body == NULL) {
		snprintf(x->err, sizeof(x->err), "out of memory");
		goto out;
	}
	jw_lit(body, "[\"category.get\",");
	jw_cstr(body, category);
	jw_lit(body, ",{\"position\":");
	jw_i64(body, position);
	jw_lit(body, ",\"batchSize\":1000}]");
	evbuffer_add_printf(
	    req,
	    "POST %s/rpc HTTP/1.1\r\nHost: %s\r\nUser-Agent: eventodb-export/" PACKAGE_VERSION
	    "\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n",
	    x->url.base, x->url.hostport, x->token, evbuffer_get_length(body));
	evbuffer_add_buffer(req, body);
	/* one keep-alive connection; a reused one the server has closed
	 * meanwhile is opened again once */
	for (;;) {
		size_t len = evbuffer_get_length(req);
		const char *p = (const char *)evbuffer_pullup(req, -1);
		bool fresh = !x->connected;

		if (fresh) {
			if (cli_connect(&x->conn, &x->url, EXPORT_TIMEOUT, err, sizeof(err)) != 0) {
				snprintf(x->err, sizeof(x->err), "failed to fetch messages: %s", err);
				goto out;
			}
			x->connected = true;
		}
		if (cli_send(&x->conn, p, len) != 0)
			snprintf(err, sizeof(err), "sending the request: %s", strerror(errno));
		else if (cli_read_head(&x->conn, &r, err, sizeof(err)) == 0)
			break;
		cli_close(&x->conn);
		x->connected = false;
		if (fresh) {
			snprintf(x->err, sizeof(x->err), "failed to fetch messages: %s", err);
			goto out;
		}
	}
	evbuffer_drain(body, evbuffer_get_length(body));
	cli_body_init(&bs, &r);
	while ((n = cli_read_body(&x->conn, &r, &bs, body, err, sizeof(err))) > 0)
		;
	if (n < 0) {
		snprintf(x->err, sizeof(x->err), "failed to fetch messages: %s", err);
		cli_close(&x->conn);
		x->connected = false;
		goto out;
	}
	if (r.close) {
		cli_close(&x->conn);
		x->connected = false;
	}
	if (r.status != 200) {
		utf8_snprintf(x->err, sizeof(x->err), "failed to fetch messages: HTTP %d: %.*s", r.status,
		              (int)evbuffer_get_length(body), (const char *)evbuffer_pullup(body, -1));
		goto out;
	}
	{
		struct json_tokener *tok = json_tokener_new_ex(512);
		size_t len = evbuffer_get_length(body), big;
		const char *text = (const char *)evbuffer_pullup(body, -1);
		char *wide = NULL;

		if (tok == NULL) {
			snprintf(x->err, sizeof(x->err), "out of memory");
			goto out;
		}
		if (len > (size_t)INT_MAX / 2) { /* json-c takes an int, widened below */
			snprintf(x->err, sizeof(x->err), "failed to fetch messages: response too large");
			json_tokener_free(tok);
			goto out;
		}
		/* numbers beyond 64-bit integers (PostgreSQL prints 2.5e21 as 22
		 * digits) as doubles, the way Go reads every number */
		if (text != NULL && (big = jsonnum_bigints(text, len)) > 0 &&
		    (wide = malloc(len + 2 * big + 1)) != NULL) {
			len = jsonnum_widen(text, len, wide);
			text = wide;
		}
		*res = json_tokener_parse_ex(tok, text, (int)len);
		free(wide);
		if (json_tokener_get_error(tok) != json_tokener_success ||
		    !json_object_is_type(*res, json_type_array)) {
			snprintf(x->err, sizeof(x->err), "failed to fetch messages: failed to decode response");
			json_object_put(*res);
			*res = NULL;
			json_tokener_free(tok);
			goto out;
		}
		json_tokener_free(tok);
	}
	rc = 0;
out:
	if (req != NULL)
		evbuffer_free(req);
	if (body != NULL)
		evbuffer_free(body);
	return rc;
}

static int
export_category(struct exporter *x, const char *category)
{
	int64_t position = 0;

	for (;;) {
		json_object *page, *last;
		size_t n;

		if (fetch(x, category, position, &page) != 0)
			return -1;
		n = json_object_array_length(page);
		if (n == 0) {
			json_object_put(page);
			return 0;
		}
		for (size_t i = 0; i < n; i++) {
			if (!write_record(x, json_object_array_get_idx(page, i))) {
				snprintf(x->err, sizeof(x->err), "failed to fetch messages: unexpected message format");
				json_object_put(page);
				return -1;
			}
		}
		last = json_object_array_get_idx(json_object_array_get_idx(page, n - 1), 4);
		position = json_object_get_int64(last) + 1;
		json_object_put(page);
		if (flush_out(x) != 0)
			return -1;
		fprintf(stderr, "\rExported: %lld %s...", (long long)x->exported, cli_events(x->exported));
	}
}

static int
parse_date(const char *s, int64_t *us)
{
	return rfc3339_parse(s, strlen(s), true, us);
}

int
cli_export_main(int argc, char **argv)
{
	struct exporter x;
	char *cats = NULL;
	int rc;

	memset(&x, 0, sizeof(x));
	x.fd = -1;
	if (cli_start(export_flags, usage, argc, argv, &rc))
		return rc;
	if (cli_require_target(f_url, f_token, &x.url, x.err, sizeof(x.err)) != 0)
		goto fail;
	x.token = f_token;
	if (f_since != NULL && *f_since != '\0') {
		if (parse_date(f_since, &x.since_us) != 0) {
			snprintf(x.err, sizeof(x.err), "invalid --since: expected YYYY-MM-DD or RFC3339 format");
			goto fail;
		}
		x.has_since = true;
	}
	if (f_until != NULL && *f_until != '\0') {
		if (parse_date(f_until, &x.until_us) != 0) {
			snprintf(x.err, sizeof(x.err), "invalid --until: expected YYYY-MM-DD or RFC3339 format");
			goto fail;
		}
		x.has_until = true;
	}
	if (f_output != NULL && *f_output != '\0') {
		x.fd = open(f_output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (x.fd < 0) {
			snprintf(x.err, sizeof(x.err), "failed to create output file: %s", strerror(errno));
			goto fail;
		}
	} else {
		x.fd = dup(STDOUT_FILENO);
	}
	if (f_gzip && (x.gz = gzdopen(x.fd, "wb")) == NULL) {
		snprintf(x.err, sizeof(x.err), "failed to set up gzip output");
		goto fail;
	}
	if ((x.out = evbuffer_new()) == NULL) {
		snprintf(x.err, sizeof(x.err), "out of memory");
		goto fail;
	}
	if (f_categories != NULL && *f_categories != '\0') {
		char *save = NULL, *tok;

		cats = strdup(f_categories);
		for (tok = strtok_r(cats, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
			size_t n;

			tok += strspn(tok, " \t\r\n");
			n = strlen(tok);
			while (n > 0 && strchr(" \t\r\n", tok[n - 1]) != NULL)
				tok[--n] = '\0';
			if (export_category(&x, tok) != 0)
				goto fail;
		}
	} else if (export_category(&x, "") != 0) {
		goto fail;
	}
	fprintf(stderr, "\rExported: %lld %s total\n", (long long)x.exported, cli_events(x.exported));
	if (flush_out(&x) != 0)
		goto fail;
	if (x.gz != NULL) {
		rc = gzclose(x.gz);
		x.gz = NULL;
		x.fd = -1; /* gzclose closed it */
		if (rc != Z_OK) {
			snprintf(x.err, sizeof(x.err), "failed to close output file: gzip error %d", rc);
			goto fail;
		}
	}
	if (x.fd >= 0 && close(x.fd) != 0) {
		x.fd = -1;
		snprintf(x.err, sizeof(x.err), "failed to close output file: %s", strerror(errno));
		goto fail;
	}
	x.fd = -1;
	if (x.connected)
		cli_close(&x.conn);
	evbuffer_free(x.out);
	free(cats);
	return 0;
fail:
	fprintf(stderr, "Error: %s\n", x.err);
	if (x.gz != NULL)
		gzclose(x.gz);
	else if (x.fd >= 0)
		close(x.fd);
	if (x.connected)
		cli_close(&x.conn);
	if (x.out != NULL)
		evbuffer_free(x.out);
	free(cats);
	return 1;
}
