/*
 * Digests and randomness through OpenSSL libcrypto: SHA-256 (token hashes),
 * MD5 (Message DB hash_64), constant-time comparison and the OS CSPRNG.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/md5.h>
#include <openssl/sha.h>
#include <openssl/rand.h>

#include "evlib.h"

/*
 * The one-shot low-level functions, not EVP: OpenSSL 3.0's EVP_Digest
 * allocates a context and fetches the algorithm on every call (three heap
 * allocations; a reused EVP_MD_CTX still allocates one), and a token is
 * hashed on every request. SHA256_Init/Update/Final (and MD5's) work on a
 * context on the stack and allocate nothing. They are deprecated in 3.0 in
 * favour of EVP, but stay exported; nothing here needs a provider other
 * than the built-in one.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void digest_sha256(const void *in, size_t n, uint8_t out[32])
{
	SHA256_CTX c;

	/* a digest that silently came out wrong would be worse than stopping */
	if (SHA256_Init(&c) != 1 || SHA256_Update(&c, in, n) != 1 || SHA256_Final(out, &c) != 1) {
		fprintf(stderr, "eventodb: OpenSSL SHA-256 digest failed\n");
		abort();
	}
	OPENSSL_cleanse(&c, sizeof c);
}

void digest_md5(const void *in, size_t n, uint8_t out[16])
{
	MD5_CTX c;

	if (MD5_Init(&c) != 1 || MD5_Update(&c, in, n) != 1 || MD5_Final(out, &c) != 1) {
		fprintf(stderr, "eventodb: OpenSSL MD5 digest failed\n");
		abort();
	}
}
#pragma GCC diagnostic pop

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
