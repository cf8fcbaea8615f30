/*
 * Replies built on the connection layer: JSON, error and text bodies, the
 * pooled response buffers, request accounting (stats counters, the latency
 * histogram) and the access log; and the one query-string parser every
 * endpoint uses.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "evlib.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "pool.h"
#include "resp.h"
#include "shm.h"
#include "wbuf.h"
#include "worker.h"

/* ---- pooled responses ------------------------------------------------------ */

struct resp *
resp_get(struct worker *w)
{
	struct resp *r = pool_get(&w->resp_pool);

	if (r == NULL)
		return NULL;
	r->magic = RESP_MAGIC;
	r->buf.len = 0;
	r->buf.failed = false;
	return r;
}

void
resp_free(void *obj)
{
	struct resp *r = obj;

	wb_free(&r->buf);
	r->magic = 0;
}

void
resp_put(struct worker *w, struct resp *r)
{
	if (r == NULL)
		return;
	if (r->magic != RESP_MAGIC)
		abort();
	/* one huge reply must not pin its memory in the pool */
	wb_reset(&r->buf, RESP_KEEP);
	pool_put(&w->resp_pool, r);
}

/* ---- statuses and bodies ----------------------------------------------------- */

int
http_status_for(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{"INVALID_REQUEST", 400}, {"METHOD_NOT_FOUND", 404}, {"AUTH_REQUIRED", 401},
		{"AUTH_INVALID_TOKEN", 401}, {"AUTH_UNAUTHORIZED", 403}, {"STREAM_NOT_FOUND", 404},
		{"NAMESPACE_NOT_FOUND", 404}, {"NOT_FOUND", 404}, {"STREAM_VERSION_CONFLICT", 409},
		{"NAMESPACE_EXISTS", 409}, {"MESSAGE_EXISTS", 409}, {"BODY_TOO_LARGE", 413},
		{"MESSAGE_TOO_LARGE", 413}, {"BACKEND_UNAVAILABLE", 503}, {"TOO_MANY_REQUESTS", 429},
		{"REQUEST_TIMEOUT", 408}, {"LENGTH_REQUIRED", 411}, {"URI_TOO_LONG", 414},
		{"HEADERS_TOO_LARGE", 431}, {"NOT_IMPLEMENTED", 501}, {"HTTP_VERSION_NOT_SUPPORTED", 505},
		{"TOO_MANY_CONNECTIONS", 503}, {"NAMESPACE_LIMIT", 507},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

void
http_error_body(struct wbuf *b, const char *code, const char *message, const char *details)
{
	jw_lit(b, "{\"error\":{\"code\":");
	jw_cstr(b, code);
	jw_lit(b, ",\"message\":");
	jw_cstr(b, message);
	if (details != NULL && details[0] != '\0') {
		jw_lit(b, ",\"details\":");
		jw_raw(b, details, strlen(details));
	}
	jw_lit(b, "}}\n");
}

void
http_send_json(struct http_req *req, int status, struct wbuf *body)
{
	if (body->failed) {
		static const char oom[] = "{\"error\":{\"code\":\"INTERNAL_ERROR\",\"message\":\"Out of memory\"}}\n";
		http_send(req, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	http_send(req, status, "application/json", body->p, body->len);
}

void
http_send_error(struct http_req *req, int status, const char *code, const char *message, const char *details)
{
	struct worker *w = http_req_worker(req);
	struct resp *r = resp_get(w);

	if (r == NULL) {
		static const char oom[] = "{\"error\":{\"code\":\"INTERNAL_ERROR\",\"message\":\"Out of memory\"}}\n";
		http_send(req, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	http_error_body(&r->buf, code, message, details);
	http_send_json(req, status, &r->buf);
	resp_put(w, r);
}

void
http_send_text(struct http_req *req, int status, const char *text)
{
	struct worker *w = http_req_worker(req);
	struct resp *r = resp_get(w);

	if (r == NULL) {
		http_send(req, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
		return;
	}
	/* Go's http.Error: the text, a newline, nosniff. */
	wb_add(&r->buf, text, strlen(text));
	wb_lit(&r->buf, "\n");
	http_add_header(req, "X-Content-Type-Options", "nosniff");
	http_send(req, status, "text/plain; charset=utf-8", r->buf.p, r->buf.len);
	resp_put(w, r);
}

/* ---- accounting ------------------------------------------------------------------- */

void
http_account_head(struct http_req *req, int status)
{
	static const int64_t bounds[] = LATENCY_BOUNDS_US;
	struct shm_worker *me = http_req_worker(req)->me;
	struct stats *st = &me->st;
	int64_t us = now_unix_us() - http_req_start_us(req);
	size_t b = 0;

	if (status < 300)
		st->http_2xx++;
	else if (status < 500)
		st->http_4xx++;
	else
		st->http_5xx++;
	if (us < 0)
		us = 0;
	while (b < sizeof(bounds) / sizeof(bounds[0]) && us > bounds[b])
		b++;
	me->latency[b]++;
	st->latency_us_sum += (uint64_t)us;
}

/* The access log: one nginx-style line per request, buffered per worker. */
static struct {
	char *dest; /* "-" = stderr, else a path; NULL = off */
	int fd;
	struct wbuf buf;
	time_t sec;
	char stamp[40];
} alog = {NULL, -1, {NULL, 0, 0, false}, 0, ""};

#define ALOG_FLUSH_AT (32 * 1024)

int
http_access_log_open(const char *dest)
{
	if (dest == NULL || dest[0] == '\0' || strcmp(dest, "off") == 0)
		return 0;
	free(alog.dest);
	alog.dest = strdup(dest);
	if (alog.dest == NULL)
		return -1;
	if (strcmp(dest, "-") == 0) {
		alog.fd = STDERR_FILENO;
		return 0;
	}
	alog.fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return alog.fd < 0 ? -1 : 0;
}

void
http_access_log_flush(void)
{
	size_t off = 0;

	while (alog.fd >= 0 && off < alog.buf.len) {
		ssize_t n = write(alog.fd, alog.buf.p + off, alog.buf.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	alog.buf.len = 0;
}

void
http_access_log_reopen(void)
{
	int fd;

	if (alog.dest == NULL || strcmp(alog.dest, "-") == 0)
		return;
	http_access_log_flush();
	fd = open(alog.dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		log_error("cannot reopen the access log %s: %s", alog.dest, strerror(errno));
		return;
	}
	if (alog.fd >= 0 && alog.fd != STDERR_FILENO)
		close(alog.fd);
	alog.fd = fd;
}

/* After a reload: --access-log may name another destination, or off. A
 * destination that cannot be opened leaves the current one in place. */
void
http_access_log_switch(const char *dest)
{
	bool off = dest == NULL || dest[0] == '\0' || strcmp(dest, "off") == 0;
	char *d;
	int fd;

	if (off ? alog.dest == NULL : alog.dest != NULL && strcmp(alog.dest, dest) == 0)
		return;
	if (off) {
		http_access_log_close();
		log_debug("access log off");
		return;
	}
	fd = strcmp(dest, "-") == 0 ? STDERR_FILENO : open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0 || (d = strdup(dest)) == NULL) {
		log_error("cannot open the access log %s: %s; keeping the current one", dest, strerror(errno));
		if (fd >= 0 && fd != STDERR_FILENO)
			close(fd);
		return;
	}
	http_access_log_flush();
	if (alog.fd >= 0 && alog.fd != STDERR_FILENO)
		close(alog.fd);
	free(alog.dest);
	alog.dest = d;
	alog.fd = fd;
	log_debug("access log now %s", dest);
}

void
http_access_log_close(void)
{
	http_access_log_flush();
	if (alog.fd >= 0 && alog.fd != STDERR_FILENO)
		close(alog.fd);
	alog.fd = -1;
	wb_free(&alog.buf);
	free(alog.dest);
	alog.dest = NULL;
}

/* Appends s with control characters, quotes and backslashes escaped
 * (nginx's escape=default), so a client cannot forge a line. */
static void
alog_text(const char *s, size_t max)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t run = 0, i;

	if (s == NULL || *s == '\0') {
		wb_lit(&alog.buf, "-");
		return;
	}
	for (i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[4];

		if (ch >= 0x20 && ch != 0x7f && ch != '"' && ch != '\\')
			continue;
		wb_add(&alog.buf, s + run, i - run);
		esc[0] = '\\';
		esc[1] = 'x';
		esc[2] = hexd[ch >> 4];
		esc[3] = hexd[ch & 15];
		wb_add(&alog.buf, esc, 4);
		run = i + 1;
	}
	wb_add(&alog.buf, s + run, i - run);
}

/* The query with every token parameter's value hidden: tokens are never logged. */
static void
alog_query(const char *q)
{
	char tmp[2048];
	size_t o = 0;

	for (const char *p = q; *p != '\0' && o + 16 < sizeof(tmp);) {
		const char *amp = strchr(p, '&');
		size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);

		if (o > 0)
			tmp[o++] = '&';
		if (n >= 6 && strncmp(p, "token=", 6) == 0) {
			memcpy(tmp + o, "token=-", 7);
			o += 7;
		} else {
			if (n > sizeof(tmp) - o - 16)
				n = sizeof(tmp) - o - 16;
			memcpy(tmp + o, p, n);
			o += n;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	tmp[o] = '\0';
	wb_lit(&alog.buf, "?");
	alog_text(tmp, sizeof(tmp));
}

void
http_account_done(const struct http_done *d)
{
	char num[96];
	time_t sec;

	if (alog.fd < 0)
		return;
	sec = (time_t)(d->end_us / 1000000);
	if (sec != alog.sec) {
		struct tm tm;
		gmtime_r(&sec, &tm);
		strftime(alog.stamp, sizeof(alog.stamp), "%d/%b/%Y:%H:%M:%S +0000", &tm);
		alog.sec = sec;
	}
	alog_text(d->peer, 64);
	wb_lit(&alog.buf, " - - [");
	wb_add(&alog.buf, alog.stamp, strlen(alog.stamp));
	wb_lit(&alog.buf, "] \"");
	alog_text(d->method, 16);
	wb_lit(&alog.buf, " ");
	alog_text(d->path, 1024);
	if (d->query != NULL)
		alog_query(d->query);
	snprintf(num, sizeof(num), " HTTP/1.%u\" %d %llu \"", d->minor, d->status, (unsigned long long)d->body_bytes);
	wb_add(&alog.buf, num, strlen(num));
	alog_text(d->referer, 512);
	wb_lit(&alog.buf, "\" \"");
	alog_text(d->user_agent, 512);
	snprintf(num, sizeof(num), "\" %.3f\n", (double)(d->end_us - d->start_us) / 1e6);
	wb_add(&alog.buf, num, strlen(num));
	if (alog.buf.len >= ALOG_FLUSH_AT || alog.buf.failed)
		http_access_log_flush();
}

/* ---- query strings --------------------------------------------------------------- */

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

bool
http_query_valid(const char *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (q[i] == '\0')
			return false;
		if (q[i] != '%')
			continue;
		if (i + 2 >= n || hexval(q[i + 1]) < 0 || hexval(q[i + 2]) < 0)
			return false;
		if (q[i + 1] == '0' && q[i + 2] == '0')
			return false; /* %00: a NUL */
		i += 2;
	}
	return true;
}

/* Decodes s[0..n) ('+' is a space, %XX) into out; -1 when it does not fit.
 * (A '%' that starts no escape stays itself; the connection layer has
 * refused such queries already.) */
static long
qdecode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (o + 1 >= cap)
			return -1;
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return (long)o;
}

int
http_query_param(const char *query, size_t qlen, const char *name, char *out, size_t cap, size_t *len)
{
	size_t i = 0, nlen = strlen(name);
	char key[64];

	if (query == NULL || cap == 0)
		return 0;
	while (i < qlen) {
		const char *p = query + i, *amp = memchr(p, '&', qlen - i), *eq;
		size_t plen = amp != NULL ? (size_t)(amp - p) : qlen - i;
		long kl, vl;

		i += plen + 1;
		eq = memchr(p, '=', plen);
		if (plen == 0 || eq == NULL || eq == p + plen - 1)
			continue; /* empty, valueless, or an empty value: ignored */
		if ((size_t)(eq - p) > 3 * nlen + 2)
			continue;
		kl = qdecode(p, (size_t)(eq - p), key, sizeof(key));
		if (kl < 0 || (size_t)kl != nlen || memcmp(key, name, nlen) != 0)
			continue;
		vl = qdecode(eq + 1, plen - (size_t)(eq + 1 - p), out, cap);
		if (vl < 0)
			return -1;
		*len = (size_t)vl;
		return 1;
	}
	return 0;
}

int
http_req_param(const struct http_req *req, const char *name, char *out, size_t cap, size_t *len)
{
	const char *q = http_req_query(req);

	return q != NULL ? http_query_param(q, strlen(q), name, out, cap, len) : 0;
}
