/*
 * json-c reads an integer literal beyond the 64-bit range as the nearest
 * 64-bit value (2500000000000000000000 becomes 18446744073709551615), which
 * silently changes data. Go, and PostgreSQL's numeric, keep such numbers;
 * PostgreSQL even prints large floats that way (2.5e21 as 22 digits). These
 * helpers give such literals a ".0" first, so json-c reads them as doubles.
 */
#ifndef EVENTODB_JSONNUM_H
#define EVENTODB_JSONNUM_H

#include <stddef.h>

/* How many integer literals of s (outside strings) json-c would clamp. */
size_t jsonnum_bigints(const char *s, size_t n);
/* s with ".0" after each of them into out, which must hold n + 2 *
 * jsonnum_bigints(s, n) + 1 bytes (NUL-terminated); returns the length. */
size_t jsonnum_widen(const char *s, size_t n, char *out);

#endif
