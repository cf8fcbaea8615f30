/*
 * Streaming JSON output straight into an evbuffer: strings escaped the way
 * Go's encoding/json does (<, >, &, U+2028 and U+2029 as \u escapes), integers
 * without a temporary tree. data/metadata text from the store is appended
 * verbatim with jw_raw.
 */
#ifndef EVENTODB_JSONW_H
#define EVENTODB_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

void jw_str(struct evbuffer *b, const char *s, size_t len);
void jw_cstr(struct evbuffer *b, const char *s); /* NULL writes null */
void jw_i64(struct evbuffer *b, int64_t v);
void jw_raw(struct evbuffer *b, const char *s, size_t len);
#define jw_lit(b, lit) jw_raw((b), (lit), sizeof(lit) - 1)
/* "key": */
void jw_key(struct evbuffer *b, const char *key);
/* RFC 3339 time string from microseconds, trimmed fraction. */
void jw_time_us(struct evbuffer *b, int64_t us);

/* Escapes s into out (for tests); returns bytes written, out must hold 6*len+3. */
size_t jw_escape(const char *s, size_t len, char *out);

#endif
