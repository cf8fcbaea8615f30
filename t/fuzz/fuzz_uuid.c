/*
 * uuid_canonical (lib/uuid.c) against a reference written from Go's
 * uuid.Parse forms: 8-4-4-4-12 hex, the same in braces, with a
 * case-insensitive "urn:uuid:" before it, or 32 hex digits. The output is
 * the lowercase canonical form of the same 16 bytes, and canonical again.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "evlib.h"
#include "fuzz.h"

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The 32 hex digits of s (lowercased) into hex, or false. */
static bool
reference(const char *s, size_t len, char hex[33])
{
	size_t o = 0;

	if (len == 36 + 9) {
		if (strncasecmp(s, "urn:uuid:", 9) != 0)
			return false;
		s += 9;
		len = 36;
	} else if (len == 38) {
		if (s[0] != '{' || s[37] != '}')
			return false;
		s++;
		len = 36;
	} else if (len != 36 && len != 32) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		int v;

		if (len == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
			if (s[i] != '-')
				return false;
			continue;
		}
		if ((v = hexval((unsigned char)s[i])) < 0)
			return false;
		hex[o++] = "0123456789abcdef"[v];
	}
	hex[o] = '\0';
	return o == 32;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char out[UUID_STRLEN + 1], again[UUID_STRLEN + 1], hex[33], got[33];
	bool ok, ref;
	size_t o = 0;

	ok = uuid_canonical(in, size, out) == 0;
	ref = reference(in, size, hex);
	FUZZ_CHECK(ok == ref);
	if (!ok)
		return 0;
	FUZZ_CHECK(strlen(out) == UUID_STRLEN);
	for (size_t i = 0; i < UUID_STRLEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			FUZZ_CHECK(out[i] == '-');
			continue;
		}
		FUZZ_CHECK((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'));
		got[o++] = out[i];
	}
	got[o] = '\0';
	FUZZ_CHECK(strcmp(got, hex) == 0);
	FUZZ_CHECK(uuid_canonical(out, UUID_STRLEN, again) == 0 && strcmp(out, again) == 0);
	return 0;
}
