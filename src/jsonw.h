/*
 * Streaming JSON output straight into an evbuffer: strings escaped the way
 * Go's encoding/json does (<, >, &, U+2028 and U+2029 as \u escapes), integers
 * without a temporary tree. data/metadata text from the store is appended
 * with jw_compact: insignificant whitespace removed, everything else (key
 * order, numbers, string bytes and escapes) exactly as stored.
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
/*
 * Appends the JSON text s without insignificant whitespace (SPEC D21): a
 * byte loop that copies strings untouched and drops blanks between tokens;
 * no parse, no allocation beyond the buffer's own growth. PostgreSQL's jsonb
 * text form ({"a": 1, "b": [1, 2]}) comes out as the embedded store and the
 * Go server write it ({"a":1,"b":[1,2]}). s must be valid JSON.
 */
void jw_compact(struct evbuffer *b, const char *s, size_t len);
/* The same copy into out (at least len bytes; out may be s itself, the copy
 * never grows). Returns the bytes written. */
size_t jw_compact_to(const char *s, size_t len, char *out);
/* "key": */
void jw_key(struct evbuffer *b, const char *key);
/* RFC 3339 time string from microseconds, trimmed fraction. */
void jw_time_us(struct evbuffer *b, int64_t us);

/* Escapes s into out (for tests); returns bytes written, out must hold 6*len+3. */
size_t jw_escape(const char *s, size_t len, char *out);

#endif
