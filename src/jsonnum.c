/* Integer literals json-c cannot hold, marked as floats (see jsonnum.h). */
#include "autoconf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jsonnum.h"

/* Whether the integer literal s[0..n) (optional '-', digits) fits int64 or
 * uint64. Leading zeros count for nothing: json-c takes them after a '-'
 * even in strict mode. */
static bool
fits(const char *s, size_t n)
{
	char buf[32];
	size_t neg = n > 0 && s[0] == '-', z = neg, m;

	while (z + 1 < n && s[z] == '0')
		z++;
	m = n - z; /* significant digits */
	if (m < 19)
		return true;
	if (neg + m >= sizeof(buf))
		return false;
	buf[0] = '-';
	memcpy(buf + neg, s + z, m);
	buf[neg + m] = '\0';
	errno = 0;
	if (neg)
		(void)strtoll(buf, NULL, 10);
	else
		(void)strtoull(buf, NULL, 10);
	return errno != ERANGE;
}

/* Walks s; calls back (when out is set, copying) for each literal to widen. */
static size_t
walk(const char *s, size_t n, char *out)
{
	size_t i = 0, o = 0, count = 0;
	bool in_str = false;

	while (i < n) {
		char c = s[i];

		if (in_str) {
			if (out != NULL)
				out[o++] = c;
			if (c == '\\' && i + 1 < n) {
				if (out != NULL)
					out[o++] = s[i + 1];
				i += 2;
				continue;
			}
			if (c == '"')
				in_str = false;
			i++;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i + (c == '-'), k;
			bool integer;

			while (j < n && s[j] >= '0' && s[j] <= '9')
				j++;
			integer = j == n || (s[j] != '.' && s[j] != 'e' && s[j] != 'E');
			k = j;
			while (k < n && ((s[k] >= '0' && s[k] <= '9') || s[k] == '.' || s[k] == 'e' || s[k] == 'E' ||
			                 s[k] == '+' || s[k] == '-'))
				k++;
			if (out != NULL) {
				memcpy(out + o, s + i, k - i);
				o += k - i;
			}
			if (integer && k == j && !fits(s + i, j - i)) {
				count++;
				if (out != NULL) {
					out[o++] = '.';
					out[o++] = '0';
				}
			}
			i = k;
			continue;
		}
		if (out != NULL)
			out[o++] = c;
		i++;
	}
	if (out != NULL)
		out[o] = '\0';
	return out != NULL ? o : count;
}

size_t
jsonnum_bigints(const char *s, size_t n)
{
	return walk(s, n, NULL);
}

size_t
jsonnum_widen(const char *s, size_t n, char *out)
{
	return walk(s, n, out);
}
