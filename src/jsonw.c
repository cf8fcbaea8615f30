/*
 * The JSON writer. Runs of bytes that need no escaping are appended in one
 * call; only the rare escaped byte goes through a small buffer.
 */
#include "autoconf.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "evlib.h"
#include "jsonw.h"
#include "wbuf.h"

/* 1 for bytes that must be escaped (controls, '"', '\\', '<', '>', '&'). */
static const unsigned char needs_escape[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['"'] = 1, ['\\'] = 1, ['<'] = 1, ['>'] = 1, ['&'] = 1,
	[0xe2] = 2, /* possible start of U+2028 / U+2029 */
};

static const char hexd[] = "0123456789abcdef";

/* Escape for one byte at s[i]; returns its length in esc, and how many input bytes it consumed. */
static size_t
escape_one(const unsigned char *s, size_t len, size_t i, char *esc, size_t *used)
{
	unsigned char c = s[i];

	*used = 1;
	if (c == 0xe2) {
		if (i + 2 < len && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			*used = 3;
			memcpy(esc, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			return 6;
		}
		esc[0] = (char)c;
		return 1;
	}
	switch (c) {
	case '"': memcpy(esc, "\\\"", 2); return 2;
	case '\\': memcpy(esc, "\\\\", 2); return 2;
	case '\n': memcpy(esc, "\\n", 2); return 2;
	case '\r': memcpy(esc, "\\r", 2); return 2;
	case '\t': memcpy(esc, "\\t", 2); return 2;
	default:
		esc[0] = '\\';
		esc[1] = 'u';
		esc[2] = '0';
		esc[3] = '0';
		esc[4] = hexd[c >> 4];
		esc[5] = hexd[c & 15];
		return 6;
	}
}

size_t
jw_escape(const char *str, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t o = 0, i = 0, used;

	out[o++] = '"';
	while (i < len) {
		if (!needs_escape[s[i]]) {
			out[o++] = (char)s[i++];
			continue;
		}
		o += escape_one(s, len, i, out + o, &used);
		i += used;
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

/* Both sinks, one implementation: add is evbuffer_add or wb_add. */
typedef void (*jw_add_fn)(void *sink, const void *p, size_t n);

static void
add_e(void *sink, const void *p, size_t n)
{
	evbuffer_add(sink, p, n);
}

static void
add_w(void *sink, const void *p, size_t n)
{
	wb_add(sink, p, n);
}

static void
str_to(jw_add_fn add, void *b, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0, used, n;
	char esc[8];

	add(b, "\"", 1);
	while (i < len) {
		if (!needs_escape[s[i]]) {
			i++;
			continue;
		}
		if (i > run)
			add(b, s + run, i - run);
		n = escape_one(s, len, i, esc, &used);
		add(b, esc, n);
		i += used;
		run = i;
	}
	if (len > run)
		add(b, s + run, len - run);
	add(b, "\"", 1);
}

static void
i64_to(jw_add_fn add, void *b, int64_t v)
{
	char buf[24];
	char *p = buf + sizeof(buf);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	add(b, p, (size_t)(buf + sizeof(buf) - p));
}

static void
time_to(jw_add_fn add, void *b, int64_t us)
{
	char buf[RFC3339_BUFLEN + 2];
	size_t n;

	buf[0] = '"';
	n = rfc3339_format_us(us, buf + 1);
	buf[n + 1] = '"';
	add(b, buf, n + 2);
}

/* JSON's four whitespace bytes; everything else outside a string is kept. */
static const unsigned char is_blank[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

size_t
jw_compact_to(const char *str, size_t len, char *out)
{
	const char *s = str, *end = str + len;
	size_t o = 0;

	while (s < end) {
		unsigned char c = (unsigned char)*s++;
		const char *q, *bs;
		size_t n;

		if (is_blank[c])
			continue;
		out[o++] = (char)c;
		if (c != '"')
			continue;
		/* A string, copied in runs up to its closing quote: a quote
		 * after a backslash is escaped (the backslash takes the next
		 * byte with it) and does not end it. The candidate quote is
		 * searched again only once an escape has passed it, so the
		 * copy stays linear. memmove: out may be str. */
		q = NULL;
		while (s < end) {
			const char *stop;

			if (q == NULL || q < s) {
				q = memchr(s, '"', (size_t)(end - s));
				if (q == NULL)
					q = end; /* unterminated: the rest */
			}
			stop = q < end ? q + 1 : end;
			bs = memchr(s, '\\', (size_t)(stop - s));
			n = (size_t)((bs == NULL ? stop : bs + 2 < end ? bs + 2 : end) - s);
			memmove(out + o, s, n);
			o += n;
			s += n;
			if (bs == NULL)
				break;
		}
	}
	return o;
}

static void
compact_e(struct evbuffer *b, const char *s, size_t len)
{
	struct evbuffer_iovec v;

	if (len == 0)
		return;
	/* one contiguous reservation of the worst case (nothing removed); the
	 * commit gives back what the copy did not use */
	if (evbuffer_reserve_space(b, (ev_ssize_t)len, &v, 1) != 1)
		return;
	v.iov_len = jw_compact_to(s, len, v.iov_base);
	evbuffer_commit_space(b, &v, 1);
}

static void
compact_w(struct wbuf *b, const char *s, size_t len)
{
	if (len == 0 || !wb_reserve(b, len))
		return;
	b->len += jw_compact_to(s, len, b->p + b->len);
}

#define JW_DEFINE(sfx, type, add)                                                                                      \
	void jw_str_##sfx(type *b, const char *s, size_t len) { str_to(add, b, s, len); }                              \
	void jw_cstr_##sfx(type *b, const char *s)                                                                     \
	{                                                                                                              \
		if (s == NULL)                                                                                         \
			add(b, "null", 4);                                                                             \
		else                                                                                                   \
			str_to(add, b, s, strlen(s));                                                                  \
	}                                                                                                              \
	void jw_i64_##sfx(type *b, int64_t v) { i64_to(add, b, v); }                                                   \
	void jw_raw_##sfx(type *b, const char *s, size_t len) { add(b, s, len); }                                      \
	void jw_key_##sfx(type *b, const char *key)                                                                    \
	{                                                                                                              \
		str_to(add, b, key, strlen(key));                                                                      \
		add(b, ":", 1);                                                                                        \
	}                                                                                                              \
	void jw_time_us_##sfx(type *b, int64_t us) { time_to(add, b, us); }                                           \
	void jw_compact_##sfx(type *b, const char *s, size_t len) { compact_##sfx(b, s, len); }

JW_DEFINE(e, struct evbuffer, add_e)
JW_DEFINE(w, struct wbuf, add_w)
