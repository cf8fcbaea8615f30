/*
 * UUIDs: fresh RFC 9562 version 7 ids for messages, and normalisation of
 * client-supplied ids to the lowercase canonical 8-4-4-4-12 form.
 */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "evlib.h"

/* Formats 16 bytes as lowercase 8-4-4-4-12. */
static void uuid_format(const uint8_t b[16], char out[UUID_STRLEN + 1])
{
	static const size_t groups[5] = { 4, 2, 2, 2, 6 };
	size_t g, i = 0;
	char *o = out;

	for (g = 0; g < 5; g++) {
		if (g > 0)
			*o++ = '-';
		hex_encode(b + i, groups[g], o);
		o += 2 * groups[g];
		i += groups[g];
	}
	*o = '\0';
}

void uuid_v7(char out[UUID_STRLEN + 1])
{
	uint8_t b[16];
	uint64_t ms = (uint64_t)(now_unix_us() / 1000);
	int i;

	/* An id must never be predictable or repeated: no CSPRNG, no id. */
	if (random_bytes(b + 6, 10) != 0) {
		fprintf(stderr, "eventodb: no random bytes for a UUID\n");
		abort();
	}
	for (i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (40 - 8 * i));
	b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
	b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
	uuid_format(b, out);
}

/* Decodes the 36-char hyphenated form; -1 if malformed. */
static int uuid_parse36(const char *s, uint8_t b[16])
{
	static const size_t starts[5] = { 0, 9, 14, 19, 24 };
	static const size_t bytes[5] = { 4, 2, 2, 2, 6 };
	size_t g, i = 0;

	if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return -1;
	for (g = 0; g < 5; g++) {
		if (hex_decode(s + starts[g], 2 * bytes[g], b + i) < 0)
			return -1;
		i += bytes[g];
	}
	return 0;
}

int uuid_canonical(const char *in, size_t len, char out[UUID_STRLEN + 1])
{
	uint8_t b[16];

	switch (len) {
	case 36:
		break;
	case 36 + 9:
		if (strncasecmp(in, "urn:uuid:", 9) != 0)
			return -1;
		in += 9;
		break;
	case 36 + 2:
		/* Go only skips the first character; we insist on real braces. */
		if (in[0] != '{' || in[37] != '}')
			return -1;
		in += 1;
		break;
	case 32:
		if (hex_decode(in, 32, b) < 0)
			return -1;
		uuid_format(b, out);
		return 0;
	default:
		return -1;
	}
	if (uuid_parse36(in, b) != 0)
		return -1;
	uuid_format(b, out);
	return 0;
}
