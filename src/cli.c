/*
 * What `eventodb export` and `eventodb import` share: Go-style flags, URL
 * parsing, a blocking HTTP/1.1 client on a plain socket (the commands are
 * short-lived and do one thing at a time, so blocking is the simple and
 * right choice), and JSON written the way Go's encoding/json writes it.
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "evlib.h"
#include "jsonw.h"

/* ---- flags ------------------------------------------------------------------ */

int
cli_flags_parse(const struct cli_flag *flags, int argc, char **argv, char *err, size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq;
		const struct cli_flag *f = NULL;
		size_t n;

		if (strcmp(a, "--") == 0)
			return 0;
		if (a[0] != '-' || a[1] == '\0') {
			snprintf(err, errlen, "unexpected argument: %s", a);
			return -1;
		}
		a += a[1] == '-' ? 2 : 1;
		eq = strchr(a, '=');
		n = eq != NULL ? (size_t)(eq - a) : strlen(a);
		if ((n == 1 && a[0] == 'h') || (n == 4 && strncmp(a, "help", 4) == 0))
			return 1;
		for (const struct cli_flag *g = flags; g->name != NULL; g++)
			if (strlen(g->name) == n && strncmp(g->name, a, n) == 0)
				f = g;
		if (f == NULL) {
			snprintf(err, errlen, "flag provided but not defined: -%.*s", (int)n, a);
			return -1;
		}
		if (f->type == CLI_BOOL) {
			if (eq == NULL || strcmp(eq + 1, "true") == 0 || strcmp(eq + 1, "1") == 0)
				*f->on = true;
			else if (strcmp(eq + 1, "false") == 0 || strcmp(eq + 1, "0") == 0)
				*f->on = false;
			else {
				snprintf(err, errlen, "invalid boolean value \"%s\" for -%s", eq + 1, f->name);
				return -1;
			}
			continue;
		}
		if (eq != NULL) {
			*f->str = eq + 1;
		} else if (i + 1 < argc) {
			*f->str = argv[++i];
		} else {
			snprintf(err, errlen, "flag needs an argument: -%s", f->name);
			return -1;
		}
	}
	return 0;
}

bool
cli_start(const struct cli_flag *flags, void (*usage)(FILE *), int argc, char **argv, int *exit_code)
{
	char err[512];
	int rc = cli_flags_parse(flags, argc, argv, err, sizeof(err));

	if (rc == 1) {
		usage(stdout);
		*exit_code = 0;
		return true;
	}
	if (rc < 0) {
		/* argv[0] is the command's name ("export") */
		fprintf(stderr, "%s\nsee 'eventodb %s --help'\n", err, argv[0]);
		*exit_code = 2;
		return true;
	}
	return false;
}

const char *
cli_events(int64_t n)
{
	return n == 1 ? "event" : "events";
}

int
cli_require_target(const char *url, const char *token, struct cli_url *u, char *err, size_t errlen)
{
	if (url == NULL || *url == '\0') {
		snprintf(err, errlen, "--url is required");
		return -1;
	}
	if (token == NULL || *token == '\0') {
		snprintf(err, errlen, "--token is required");
		return -1;
	}
	return cli_url_parse(url, u, err, errlen);
}

void
cli_flags_usage(FILE *out, const struct cli_flag *flags)
{
	for (const struct cli_flag *f = flags; f->name != NULL; f++)
		fprintf(out, "  --%s%s\n    \t%s\n", f->name, f->type == CLI_STR ? " string" : "", f->help);
}

/* ---- URLs and connections ------------------------------------------------------ */

int
cli_url_parse(const char *url, struct cli_url *u, char *err, size_t errlen)
{
	const char *p, *hend, *pstart;
	size_t n;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, "https://", 8) == 0) {
		snprintf(err, errlen,
		         "https is not supported by this client: use http:// (a TLS proxy can sit in front)");
		return -1;
	}
	if (strncasecmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "invalid --url %s: must start with http://", url);
		return -1;
	}
	p = url + 7;
	pstart = p + strcspn(p, "/?#");
	if (*p == '[') { /* [v6]:port */
		hend = memchr(p, ']', (size_t)(pstart - p));
		if (hend == NULL) {
			snprintf(err, errlen, "invalid --url %s", url);
			return -1;
		}
		n = (size_t)(hend - p - 1);
		if (n >= sizeof(u->host))
			goto bad;
		memcpy(u->host, p + 1, n);
		hend++;
	} else {
		hend = memchr(p, ':', (size_t)(pstart - p));
		if (hend == NULL)
			hend = pstart;
		n = (size_t)(hend - p);
		if (n == 0 || n >= sizeof(u->host))
			goto bad;
		memcpy(u->host, p, n);
	}
	if (hend < pstart && *hend == ':') {
		n = (size_t)(pstart - hend - 1);
		if (n == 0 || n >= sizeof(u->port) || strspn(hend + 1, "0123456789") < n)
			goto bad;
		memcpy(u->port, hend + 1, n);
	} else {
		snprintf(u->port, sizeof(u->port), "80");
	}
	n = (size_t)(pstart - p);
	if (n >= sizeof(u->hostport))
		goto bad;
	memcpy(u->hostport, p, n);
	n = strcspn(pstart, "?#");
	while (n > 0 && pstart[n - 1] == '/')
		n--;
	if (n >= sizeof(u->base))
		goto bad;
	memcpy(u->base, pstart, n);
	return 0;
bad:
	snprintf(err, errlen, "invalid --url %s", url);
	return -1;
}

int
cli_connect(struct cli_conn *c, const struct cli_url *u, int timeout_s, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	int rc, fd = -1, one = 1, saved = 0;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->timeout_s = timeout_s;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", u->hostport, strerror(saved ? saved : errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (timeout_s > 0) {
		struct timeval tv = {timeout_s, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	c->fd = fd;
	return 0;
}

void
cli_close(struct cli_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->off = c->len = 0;
}

int
cli_send(struct cli_conn *c, const void *p, size_t n)
{
	const char *s = p;

	while (n > 0) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* More bytes into the read buffer: > 0, 0 at EOF, -1 on error. */
static long
fill(struct cli_conn *c, char *err, size_t errlen)
{
	ssize_t r;

	if (c->off > 0 && c->off == c->len)
		c->off = c->len = 0;
	if (c->len == sizeof(c->buf)) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	do {
		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		snprintf(err, errlen, "reading the response: %s",
		         errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
		return -1;
	}
	c->len += (size_t)r;
	return (long)r;
}

/* One line (without CRLF) into line; 0, or -1 with a message in err. */
static int
read_line(struct cli_conn *c, char *line, size_t cap, char *err, size_t errlen)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);

		if (nl != NULL) {
			size_t n = (size_t)(nl - (c->buf + c->off));
			size_t m = n;

			if (m > 0 && c->buf[c->off + m - 1] == '\r')
				m--;
			if (m >= cap) {
				snprintf(err, errlen, "response line too long");
				return -1;
			}
			memcpy(line, c->buf + c->off, m);
			line[m] = '\0';
			c->off += n + 1;
			return 0;
		}
		if (c->len - c->off >= sizeof(c->buf) / 2) {
			snprintf(err, errlen, "response line too long");
			return -1;
		}
		long r = fill(c, err, errlen);
		if (r < 0)
			return -1;
		if (r == 0) {
			snprintf(err, errlen, "connection closed by the server");
			return -1;
		}
	}
}

int
cli_read_head(struct cli_conn *c, struct cli_resp *r, char *err, size_t errlen)
{
	char line[8192];

	memset(r, 0, sizeof(*r));
	r->length = -1;
	if (read_line(c, line, sizeof(line), err, errlen) != 0)
		return -1;
	if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12) {
		snprintf(err, errlen, "not an HTTP response: %.*s", (int)utf8_prefix(line, strlen(line), 80), line);
		return -1;
	}
	r->close = line[7] == '0';
	r->status = atoi(line + 9);
	for (;;) {
		char *v;

		if (read_line(c, line, sizeof(line), err, errlen) != 0)
			return -1;
		if (line[0] == '\0')
			break;
		v = strchr(line, ':');
		if (v == NULL)
			continue;
		*v++ = '\0';
		v += strspn(v, " \t");
		if (strcasecmp(line, "Content-Length") == 0)
			r->length = strtoll(v, NULL, 10);
		else if (strcasecmp(line, "Transfer-Encoding") == 0 && strcasecmp(v, "chunked") == 0)
			r->chunked = true;
		else if (strcasecmp(line, "Connection") == 0)
			r->close = strcasecmp(v, "close") == 0;
	}
	if (r->chunked)
		r->length = -1;
	if (r->status == 100) /* 100 Continue: the real head follows */
		return cli_read_head(c, r, err, errlen);
	return 0;
}

void
cli_body_init(struct cli_body *b, const struct cli_resp *r)
{
	memset(b, 0, sizeof(*b));
	b->left = r->chunked ? 0 : r->length;
	b->done = !r->chunked && r->length == 0;
}

long
cli_read_body(struct cli_conn *c, const struct cli_resp *r, struct cli_body *b, struct evbuffer *out, char *err,
              size_t errlen)
{
	char line[256];
	size_t have;
	long rr;

	if (b->done)
		return 0;
	if (r->chunked && !b->in_chunk) {
		if (read_line(c, line, sizeof(line), err, errlen) != 0)
			return -1;
		if (line[0] == '\0' && read_line(c, line, sizeof(line), err, errlen) != 0)
			return -1;
		b->left = strtoll(line, NULL, 16);
		if (b->left == 0) {
			/* trailers up to the blank line */
			do {
				if (read_line(c, line, sizeof(line), err, errlen) != 0)
					return -1;
			} while (line[0] != '\0');
			b->done = true;
			return 0;
		}
		b->in_chunk = true;
	}
	if (c->off == c->len) {
		rr = fill(c, err, errlen);
		if (rr < 0)
			return -1;
		if (rr == 0) {
			if (!r->chunked && r->length < 0) {
				b->done = true;
				return 0;
			}
			snprintf(err, errlen, "connection closed by the server in the middle of the response");
			return -1;
		}
	}
	have = c->len - c->off;
	if (b->left >= 0 && (int64_t)have > b->left)
		have = (size_t)b->left;
	evbuffer_add(out, c->buf + c->off, have);
	c->off += have;
	if (b->left >= 0) {
		b->left -= (int64_t)have;
		if (b->left == 0) {
			if (r->chunked)
				b->in_chunk = false;
			else
				b->done = true;
		}
	}
	return (long)have;
}

/* ---- Go-compatible JSON ------------------------------------------------------------ */

void
cli_go_float(double f, char *out, size_t cap)
{
	char buf[40], digits[24], *e;
	int prec, exp10, nd = 0, at = 0;
	bool neg;
	double a = fabs(f);

	if (!isfinite(f)) { /* not JSON; never stored */
		snprintf(out, cap, "null");
		return;
	}
	if (f == 0) {
		snprintf(out, cap, signbit(f) ? "-0" : "0");
		return;
	}
	/* the shortest digits that read back as f (what Go's strconv finds) */
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, f);
		if (strtod(buf, NULL) == f)
			break;
	}
	neg = buf[0] == '-';
	for (char *p = buf + neg; *p != 'e'; p++)
		if (*p != '.')
			digits[nd++] = *p;
	digits[nd] = '\0';
	e = strchr(buf, 'e');
	exp10 = atoi(e + 1);
	if (a < 1e-6 || a >= 1e21) {
		/* d[.ddd]e±dd, then e-07 becomes e-7 as Go's encoder does */
		at = snprintf(out, cap, "%s%c", neg ? "-" : "", digits[0]);
		if (nd > 1)
			at += snprintf(out + at, cap - (size_t)at, ".%s", digits + 1);
		if (exp10 < 0 && exp10 > -10)
			snprintf(out + at, cap - (size_t)at, "e-%d", -exp10);
		else
			snprintf(out + at, cap - (size_t)at, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
		return;
	}
	if (neg)
		out[at++] = '-';
	if (exp10 < 0) {
		out[at++] = '0';
		out[at++] = '.';
		for (int i = -1; i > exp10; i--)
			out[at++] = '0';
		for (int i = 0; i < nd; i++)
			out[at++] = digits[i];
	} else {
		for (int i = 0; i <= exp10; i++)
			out[at++] = i < nd ? digits[i] : '0';
		if (nd > exp10 + 1) {
			out[at++] = '.';
			for (int i = exp10 + 1; i < nd; i++)
				out[at++] = digits[i];
		}
	}
	out[at] = '\0';
	(void)cap;
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void
cli_json_go(struct evbuffer *b, json_object *o)
{
	char num[40];

	switch (json_object_get_type(o)) {
	case json_type_null:
		jw_lit(b, "null");
		break;
	case json_type_boolean:
		if (json_object_get_boolean(o))
			jw_lit(b, "true");
		else
			jw_lit(b, "false");
		break;
	case json_type_int: {
		int64_t v = json_object_get_int64(o);

		if (v == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
			evbuffer_add_printf(b, "%llu", (unsigned long long)json_object_get_uint64(o));
		else
			jw_i64(b, v);
		break;
	}
	case json_type_double:
		cli_go_float(json_object_get_double(o), num, sizeof(num));
		evbuffer_add(b, num, strlen(num));
		break;
	case json_type_string:
		jw_str(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(o);

		jw_lit(b, "[");
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				jw_lit(b, ",");
			cli_json_go(b, json_object_array_get_idx(o, i));
		}
		jw_lit(b, "]");
		break;
	}
	case json_type_object: {
		size_t n = (size_t)json_object_object_length(o), i = 0;
		const char **keys = n > 0 ? malloc(n * sizeof(*keys)) : NULL;

		jw_lit(b, "{");
		if (n > 0 && keys == NULL) { /* out of memory: unsorted beats nothing */
			json_object_object_foreach(o, k, v)
			{
				if (i++ > 0)
					jw_lit(b, ",");
				jw_key(b, k);
				cli_json_go(b, v);
			}
		} else {
			json_object_object_foreach(o, k, v)
			{
				(void)v;
				keys[i++] = k;
			}
			if (n > 1) /* qsort's array must not be NULL, even empty */
				qsort(keys, n, sizeof(*keys), key_cmp);
			for (i = 0; i < n; i++) {
				if (i > 0)
					jw_lit(b, ",");
				jw_key(b, keys[i]);
				cli_json_go(b, json_object_object_get(o, keys[i]));
			}
		}
		free(keys);
		jw_lit(b, "}");
		break;
	}
	}
}
