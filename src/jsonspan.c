/* Spans and the compact form of JSON text (see jsonspan.h). */
#include "autoconf.h"

#include <string.h>

#include "jsonspan.h"
#include "jsonw.h"

static size_t
skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is '"': the index just past the closing quote. */
static size_t
skip_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

/* The index just past the value starting at s[i] (i after whitespace). */
static size_t
skip_value(const char *s, size_t n, size_t i)
{
	int depth = 0;

	if (i >= n)
		return n;
	if (s[i] == '"')
		return skip_string(s, n, i);
	if (s[i] != '{' && s[i] != '[') {
		/* a number or a literal: up to a delimiter */
		while (i < n && s[i] != ',' && s[i] != ']' && s[i] != '}' && s[i] != ' ' && s[i] != '\t' &&
		       s[i] != '\n' && s[i] != '\r')
			i++;
		return i;
	}
	for (; i < n; i++) {
		switch (s[i]) {
		case '"':
			i = skip_string(s, n, i) - 1;
			break;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth == 0)
				return i + 1;
			break;
		default:
			break;
		}
	}
	return n;
}

bool
jspan_elem(const char *s, size_t n, size_t want, const char **at, size_t *len)
{
	size_t i = skip_ws(s, n, 0), k = 0;

	if (i >= n || s[i] != '[')
		return false;
	i = skip_ws(s, n, i + 1);
	while (i < n && s[i] != ']') {
		size_t end = skip_value(s, n, i);
		if (k++ == want) {
			*at = s + i;
			*len = end - i;
			return true;
		}
		i = skip_ws(s, n, end);
		if (i < n && s[i] == ',')
			i = skip_ws(s, n, i + 1);
	}
	return false;
}

static int
hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static long
hex4(const char *p)
{
	long v = 0;

	for (int k = 0; k < 4; k++) {
		int h = hexv(p[k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Whether the string token s[i..end) (quotes included) decodes to key. */
static bool
key_is(const char *s, size_t i, size_t end, const char *key)
{
	size_t klen = strlen(key), o = 0;

	if (memchr(s + i, '\\', end - i) == NULL)
		return end - i == klen + 2 && memcmp(s + i + 1, key, klen) == 0;
	for (i++; i + 1 < end; i++) {
		char ch = s[i];

		if (ch == '\\') {
			char e = s[++i];
			if (e == 'u') {
				long cp;
				if (i + 4 >= end || (cp = hex4(s + i + 1)) < 0)
					return false;
				i += 4;
				/* keys we look for are ASCII: anything else differs */
				if (cp >= 0x80)
					return false;
				ch = (char)cp;
			} else {
				ch = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
			}
		}
		if (o >= klen || key[o++] != ch)
			return false;
	}
	return o == klen;
}

bool
jspan_member(const char *s, size_t n, const char *key, const char **at, size_t *len)
{
	size_t i = skip_ws(s, n, 0);
	bool found = false;

	if (i >= n || s[i] != '{')
		return false;
	i = skip_ws(s, n, i + 1);
	while (i < n && s[i] == '"') {
		size_t kend = skip_string(s, n, i), vstart, vend;
		bool match = key_is(s, i, kend, key);

		i = skip_ws(s, n, kend);
		if (i >= n || s[i] != ':')
			return found;
		vstart = skip_ws(s, n, i + 1);
		vend = skip_value(s, n, vstart);
		if (match) {
			*at = s + vstart;
			*len = vend - vstart;
			found = true;
		}
		i = skip_ws(s, n, vend);
		if (i < n && s[i] == ',')
			i = skip_ws(s, n, i + 1);
	}
	return found;
}

size_t
jspan_count_members(const char *s, size_t n)
{
	size_t count = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"')
			i = skip_string(s, n, i) - 1;
		else if (s[i] == ':')
			count++;
	}
	return count;
}

/* Every \u escape of a UTF-16 surrogate is one of a pair, high then low.
 * (In JSON text a backslash occurs only inside strings.) */
static bool
surrogates_paired(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		long cp, lo;

		if (s[i] != '\\')
			continue;
		if (s[++i] != 'u' || i + 4 >= n)
			continue;
		cp = hex4(s + i + 1);
		i += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return false; /* a low surrogate alone */
		if (cp < 0xd800 || cp > 0xdbff)
			continue;
		if (i + 6 >= n || s[i + 1] != '\\' || s[i + 2] != 'u')
			return false; /* a high surrogate without its low half */
		lo = hex4(s + i + 3);
		if (lo < 0xdc00 || lo > 0xdfff)
			return false;
		i += 6;
	}
	return true;
}

long
jspan_compact(const char *s, size_t n, char *out)
{
	if (!surrogates_paired(s, n))
		return -1;
	return (long)jw_compact_to(s, n, out);
}
