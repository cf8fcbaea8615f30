/*
 * Strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates,
 * nothing above U+10FFFF. Used for request bodies and stream names. And
 * the one place text is cut to a byte budget without splitting a character.
 */
#include <stdarg.h>
#include <stdio.h>

#include "evlib.h"

bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t n, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false; /* continuation byte, C0, C1 or F5..FF */
		}
		if (len - i - 1 < n)
			return false;
		/* Only the first continuation byte has a narrowed range. */
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (k = 2; k <= n; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return false;
		i += n + 1;
	}
	return true;
}

size_t
utf8_prefix(const char *s, size_t len, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t m = len < max ? len : max, lead = m, need;

	/* back over at most three continuation bytes to the last lead byte */
	while (lead > 0 && m - lead < 3 && (p[lead - 1] & 0xc0) == 0x80)
		lead--;
	if (lead == 0 || (p[lead - 1] & 0xc0) != 0xc0)
		return m; /* ends on ASCII (or is not UTF-8 to begin with) */
	lead--;
	need = p[lead] >= 0xf0 ? 4 : p[lead] >= 0xe0 ? 3 : 2;
	return m - lead < need ? lead : m;
}

int
utf8_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, cap, fmt, ap);

	if (n >= 0 && cap > 0 && (size_t)n >= cap)
		buf[utf8_prefix(buf, cap - 1, cap - 1)] = '\0';
	return n;
}

int
utf8_snprintf(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = utf8_vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	return n;
}
