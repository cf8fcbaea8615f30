/*
 * Namespace tokens "ns_<base64url(namespace)>_<64 hex>": parsing per SPEC
 * D11 (the random part is the last 64 characters, so a base64url part
 * containing '_' still parses) and generation from the CSPRNG.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlib.h"

#define TOKEN_HEXLEN 64

/* Writes "invalid token format: <what>" into err and returns -1. */
static int token_error(char *err, size_t errcap, const char *what)
{
	if (err && errcap > 0)
		snprintf(err, errcap, "invalid token format: %s", what);
	return -1;
}

int token_parse(const char *tok, size_t len, char *ns, size_t nscap, char *err, size_t errcap)
{
	const char *rest, *hex, *b64, *us;
	size_t restlen, hexlen, b64len, declen;
	uint8_t raw[TOKEN_HEXLEN / 2];
	long got;

	if (len < 3 || memcmp(tok, "ns_", 3) != 0)
		return token_error(err, errcap, "missing 'ns_' prefix");
	rest = tok + 3;
	restlen = len - 3;

	/* The random part is whatever follows the last '_'. */
	us = NULL;
	for (size_t i = restlen; i > 0; i--) {
		if (rest[i - 1] == '_') {
			us = rest + i - 1;
			break;
		}
	}
	if (us) {
		hex = us + 1;
		hexlen = restlen - (size_t)(hex - rest);
	} else {
		hex = rest;
		hexlen = restlen;
	}
	if (!us || hexlen != TOKEN_HEXLEN) {
		char what[96];

		snprintf(what, sizeof what, "random part must be 64 hex characters, got %zu",
			 hexlen);
		return token_error(err, errcap, what);
	}
	if (hex_decode(hex, hexlen, raw) < 0)
		return token_error(err, errcap, "random part is not valid hexadecimal");

	b64 = rest;
	b64len = (size_t)(us - rest);
	/* Validate before decoding so an oversized part never touches ns. */
	for (size_t i = 0; i < b64len; i++) {
		unsigned char c = (unsigned char)b64[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return token_error(err, errcap, "namespace part is not valid base64url");
	}
	if (b64len % 4 == 1)
		return token_error(err, errcap, "namespace part is not valid base64url");
	declen = b64len / 4 * 3 + (b64len % 4 ? b64len % 4 - 1 : 0);
	if (declen == 0)
		return token_error(err, errcap, "namespace is empty");
	if (declen > TOKEN_NS_MAX || nscap == 0 || declen > nscap - 1)
		return token_error(err, errcap, "namespace too long");
	got = b64url_decode(b64, b64len, (uint8_t *)ns);
	if (got < 0 || (size_t)got != declen)
		return token_error(err, errcap, "namespace part is not valid base64url");
	/* Callers treat the namespace as a C string: an embedded NUL would alias. */
	if (memchr(ns, '\0', declen)) {
		ns[0] = '\0';
		return token_error(err, errcap, "namespace contains a NUL byte");
	}
	ns[declen] = '\0';
	return 0;
}

void token_generate(const char *ns, char *out)
{
	uint8_t raw[TOKEN_HEXLEN / 2];
	size_t nslen = strlen(ns), o;

	/* Cannot fit in TOKEN_MAXLEN: give an empty string rather than overflow. */
	if (nslen > TOKEN_NS_MAX) {
		out[0] = '\0';
		return;
	}
	if (random_bytes(raw, sizeof raw) != 0) {
		fprintf(stderr, "eventodb: no random bytes for a token\n");
		abort();
	}
	memcpy(out, "ns_", 3);
	o = 3 + b64url_encode(ns, nslen, out + 3);
	out[o++] = '_';
	hex_encode(raw, sizeof raw, out + o);
}
