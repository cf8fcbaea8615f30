/*
 * Digests and randomness through OpenSSL libcrypto: SHA-256 (token hashes),
 * MD5 (Message DB hash_64), constant-time comparison and the OS CSPRNG.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "evlib.h"

/* A digest that silently came out wrong would be worse than stopping. */
static void digest_or_die(const EVP_MD *md, const char *name, const void *in, size_t n,
			  uint8_t *out)
{
	if (md == NULL || EVP_Digest(in, n, out, NULL, md, NULL) != 1) {
		fprintf(stderr, "eventodb: OpenSSL %s digest failed\n", name);
		abort();
	}
}

void digest_sha256(const void *in, size_t n, uint8_t out[32])
{
	digest_or_die(EVP_sha256(), "SHA-256", in, n, out);
}

void digest_md5(const void *in, size_t n, uint8_t out[16])
{
	digest_or_die(EVP_md5(), "MD5", in, n, out);
}

void digest_sha256_hex(const void *in, size_t n, char out[65])
{
	uint8_t d[32];

	digest_sha256(in, n, d);
	hex_encode(d, sizeof d, out);
}

bool digest_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int random_bytes(void *out, size_t n)
{
	unsigned char *p = out;

	while (n > 0) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;

		if (RAND_bytes(p, chunk) != 1)
			return -1;
		p += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}
