/*
 * utf8_valid (lib/utf8.c) against a reference decoder written here the
 * plain way: decode each sequence to its code point, then reject what
 * RFC 3629 forbids (overlong forms, surrogates, above U+10FFFF, stray or
 * missing continuation bytes).
 */
#include <stdbool.h>

#include "evlib.h"
#include "fuzz.h"

static bool
reference(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp, min;
		size_t n;

		if (s[i] < 0x80) {
			i++;
			continue;
		} else if ((s[i] & 0xe0) == 0xc0) {
			n = 1, cp = s[i] & 0x1f, min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			n = 2, cp = s[i] & 0x0f, min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			n = 3, cp = s[i] & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + n >= len) /* the sequence is cut off */
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FUZZ_CHECK(utf8_valid((const char *)data, size) == reference(data, size));
	/* every prefix too: a sequence cut at the end is invalid, never read past */
	if (size > 0)
		FUZZ_CHECK(utf8_valid((const char *)data, size - 1) == reference(data, size - 1));
	return 0;
}
