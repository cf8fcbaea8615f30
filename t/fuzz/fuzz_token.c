/*
 * token_parse (lib/token.c, SPEC D11) against a reference written from the
 * rule: "ns_", then base64url, then '_' and exactly 64 hex characters at the
 * end. Accepted tokens must decode to the reference's namespace; a
 * generated token for that namespace must parse back to it.
 */
#include <stdbool.h>
#include <string.h>

#include "evlib.h"
#include "fuzz.h"

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

static bool
ishex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The reference: the namespace of tok into ns (length in *nslen), or false. */
static bool
reference(const char *tok, size_t len, uint8_t *ns, size_t *nslen)
{
	size_t b64len, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len < 3 + 1 + 64 || memcmp(tok, "ns_", 3) != 0 || tok[len - 65] != '_')
		return false;
	for (size_t i = len - 64; i < len; i++)
		if (!ishex((unsigned char)tok[i]))
			return false;
	b64len = len - 65 - 3;
	if (b64len % 4 == 1)
		return false;
	for (size_t i = 3; i < 3 + b64len; i++) {
		int v = b64val((unsigned char)tok[i]);

		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			ns[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*nslen = o;
	if (o == 0 || o > TOKEN_NS_MAX)
		return false;
	return memchr(ns, '\0', o) == NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tok = (const char *)data;
	char ns[TOKEN_NS_MAX + 1], err[128], again[TOKEN_MAXLEN + 1], ns2[TOKEN_NS_MAX + 1];
	uint8_t *want = malloc(size + 1);
	size_t wantlen = 0;
	bool ok, ref;

	FUZZ_CHECK(want != NULL);
	err[0] = '\0';
	ok = token_parse(tok, size, ns, sizeof(ns), err, sizeof(err)) == 0;
	ref = reference(tok, size, want, &wantlen);
	FUZZ_CHECK(ok == ref);
	if (ok) {
		FUZZ_CHECK(strlen(ns) == wantlen && memcmp(ns, want, wantlen) == 0);
		token_generate(ns, again);
		FUZZ_CHECK(strlen(again) <= TOKEN_MAXLEN);
		FUZZ_CHECK(token_parse(again, strlen(again), ns2, sizeof(ns2), NULL, 0) == 0);
		FUZZ_CHECK(strcmp(ns, ns2) == 0);
	} else {
		FUZZ_CHECK(strncmp(err, "invalid token format: ", 22) == 0);
	}
	/* a buffer too small for the namespace is refused, never overrun */
	if (ok && wantlen > 1)
		FUZZ_CHECK(token_parse(tok, size, ns2, wantlen, err, sizeof(err)) == -1);
	free(want);
	return 0;
}
