/*
 * Small general pieces with no EventoDB server knowledge: encodings, digests,
 * UUIDs, RFC 3339 time, stream-name helpers, UTF-8 validation and token syntax.
 * Nothing here allocates unless its comment says so.
 */
#ifndef EVLIB_H
#define EVLIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- base64url without padding ---------------------------------------- */
/* Output size for n input bytes (no NUL). */
#define B64URL_ENCLEN(n) (((n) * 4 + 2) / 3)
/* Writes B64URL_ENCLEN(n) chars plus a NUL; returns the number of chars. */
size_t b64url_encode(const void *in, size_t n, char *out);
/* Decodes unpadded base64url (non-strict: nonzero trailing bits tolerated).
 * out must hold len*3/4+1 bytes. Returns decoded length, or -1 on a bad
 * character or an impossible length (len % 4 == 1). '=' is rejected. */
long b64url_decode(const char *in, size_t len, uint8_t *out);

/* ---- hex --------------------------------------------------------------- */
/* Lowercase hex of n bytes into out (2n chars + NUL). */
void hex_encode(const void *in, size_t n, char *out);
/* Decodes 2n hex chars (either case) into n bytes; -1 if any char is not hex
 * or len is odd, else the byte count. */
long hex_decode(const char *in, size_t len, uint8_t *out);

/* ---- digests (OpenSSL libcrypto) --------------------------------------- */
void digest_sha256(const void *in, size_t n, uint8_t out[32]);
void digest_md5(const void *in, size_t n, uint8_t out[16]);
/* hex(sha256(in)) into out[65]. */
void digest_sha256_hex(const void *in, size_t n, char out[65]);
/* Constant-time comparison of n bytes; true when equal. */
bool digest_equal(const void *a, const void *b, size_t n);
/* n bytes from the OS CSPRNG (OpenSSL RAND_bytes); 0 on success. */
int random_bytes(void *out, size_t n);

/* ---- UUID -------------------------------------------------------------- */
#define UUID_STRLEN 36
/* A fresh RFC 9562 version 7 UUID, lowercase canonical, NUL-terminated. */
void uuid_v7(char out[UUID_STRLEN + 1]);
/* Accepts what Go's uuid.Parse accepts: 8-4-4-4-12 hex (any case),
 * "{...}" around it, "urn:uuid:" before it, or 32 hex digits. Writes the
 * lowercase canonical form. Returns 0, or -1 if it is not a UUID. */
int uuid_canonical(const char *in, size_t len, char out[UUID_STRLEN + 1]);

/* ---- RFC 3339 time ----------------------------------------------------- */
/* Buffer size enough for any output below. */
#define RFC3339_BUFLEN 40
/* YYYY-MM-DDTHH:MM:SS[.fraction]Z in UTC, fraction trailing zeros trimmed and
 * omitted when zero. Returns the length written (NUL-terminated). */
size_t rfc3339_format_us(int64_t unix_us, char *buf);
size_t rfc3339_format_ns(int64_t sec, long nsec, char *buf);
/* Whole seconds only (fraction dropped). */
size_t rfc3339_format_sec(int64_t unix_sec, char *buf);
/* Parses RFC 3339 (fraction optional, 'Z' or +hh:mm/-hh:mm offset, 'T' or
 * 't'); also a bare YYYY-MM-DD (UTC midnight) when allow_date is true.
 * Result in microseconds since the epoch. 0 on success, -1 otherwise. */
int rfc3339_parse(const char *s, size_t len, bool allow_date, int64_t *unix_us);
/* Current wall clock. */
int64_t now_unix_us(void);

/* ---- stream names (Message DB rules), zero allocation ------------------ */
/* category: text before the first '-', the whole name if there is none. */
size_t sn_category_len(const char *s, size_t len);
/* id: text after the first '-'; returns false (no id) when there is no '-'. */
bool sn_id(const char *s, size_t len, const char **id, size_t *idlen);
/* cardinal id: the id up to its first '+'; false when there is no id. */
bool sn_cardinal_id(const char *s, size_t len, const char **cid, size_t *cidlen);
/* Message DB hash_64: first 8 bytes of md5(v), big-endian, as signed int64. */
int64_t sn_hash64(const char *v, size_t len);
/* Consumer group membership: abs(hash_64(cardinal_id)) mod size == member;
 * a stream without an id belongs to no member. size must be > 0. */
bool sn_in_group(const char *stream, size_t len, int64_t member, int64_t size);

/* ---- UTF-8 ------------------------------------------------------------- */
/* Strict UTF-8 (no overlongs, no surrogates, max U+10FFFF). */
bool utf8_valid(const char *s, size_t len);
/* The length of the longest prefix of s (len bytes) that is at most max
 * bytes and does not end inside a multi-byte character: where to cut text
 * to a budget (a message, a log line) and keep it valid UTF-8. Looks only
 * at the first min(len, max) bytes, so it also repairs text that snprintf
 * has already cut (utf8_prefix(buf, strlen(buf), strlen(buf))). */
size_t utf8_prefix(const char *s, size_t len, size_t max);
/* snprintf that, when the text does not fit, cuts it on a character
 * boundary (so a message holding client text stays valid UTF-8). Returns
 * what vsnprintf returns. */
int utf8_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
int utf8_snprintf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- tokens: ns_<base64url(namespace)>_<64 hex> ------------------------- */
#define TOKEN_NS_MAX 192 /* largest namespace id we decode */
#define TOKEN_MAXLEN (3 + B64URL_ENCLEN(TOKEN_NS_MAX) + 1 + 64)
/* Parses per SPEC D11: "ns_" prefix, then the last 64 chars must be hex and
 * be preceded by '_', the part between is base64url (may contain '_').
 * On success writes the decoded namespace (NUL-terminated, at most
 * TOKEN_NS_MAX bytes) to ns and returns 0. On failure returns -1 and writes
 * the reference error text ("invalid token format: ...") to err. */
int token_parse(const char *tok, size_t len, char *ns, size_t nscap, char *err, size_t errcap);
/* A fresh random token for ns into out (TOKEN_MAXLEN+1 bytes). */
void token_generate(const char *ns, char *out);

#endif
