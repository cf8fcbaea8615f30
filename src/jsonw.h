/*
 * Streaming JSON output straight into a buffer: strings escaped the way
 * Go's encoding/json does (<, >, &, U+2028 and U+2029 as \u escapes), integers
 * without a temporary tree. data/metadata text from the store is appended
 * with jw_compact: insignificant whitespace removed, everything else (key
 * order, numbers, string bytes and escapes) exactly as stored.
 *
 * Every function takes either a struct wbuf * (the server's reusable
 * buffers: responses, SSE chunks) or a struct evbuffer * (the CLI, the
 * import batch text); _Generic picks the implementation.
 */
#ifndef EVENTODB_JSONW_H
#define EVENTODB_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct wbuf;

#define JW_PICK(f, b) _Generic((b), struct evbuffer *: f##_e, struct wbuf *: f##_w)

#define jw_str(b, s, len) JW_PICK(jw_str, b)((b), (s), (len))
#define jw_cstr(b, s) JW_PICK(jw_cstr, b)((b), (s)) /* NULL writes null */
#define jw_i64(b, v) JW_PICK(jw_i64, b)((b), (v))
#define jw_raw(b, s, len) JW_PICK(jw_raw, b)((b), (s), (len))
#define jw_lit(b, lit) jw_raw((b), (lit), sizeof(lit) - 1)
/* "key": */
#define jw_key(b, key) JW_PICK(jw_key, b)((b), (key))
/* RFC 3339 time string from microseconds, trimmed fraction. */
#define jw_time_us(b, us) JW_PICK(jw_time_us, b)((b), (us))
/*
 * Appends the JSON text s without insignificant whitespace (SPEC D21): a
 * byte loop that copies strings untouched and drops blanks between tokens;
 * no parse, no allocation beyond the buffer's own growth. PostgreSQL's jsonb
 * text form ({"a": 1, "b": [1, 2]}) comes out as the embedded store and the
 * Go server write it ({"a":1,"b":[1,2]}). s must be valid JSON.
 */
#define jw_compact(b, s, len) JW_PICK(jw_compact, b)((b), (s), (len))
/* The same copy into out (at least len bytes; out may be s itself, the copy
 * never grows). Returns the bytes written. */
size_t jw_compact_to(const char *s, size_t len, char *out);

void jw_str_w(struct wbuf *b, const char *s, size_t len);
void jw_cstr_w(struct wbuf *b, const char *s);
void jw_i64_w(struct wbuf *b, int64_t v);
void jw_raw_w(struct wbuf *b, const char *s, size_t len);
void jw_key_w(struct wbuf *b, const char *key);
void jw_time_us_w(struct wbuf *b, int64_t us);
void jw_compact_w(struct wbuf *b, const char *s, size_t len);

void jw_str_e(struct evbuffer *b, const char *s, size_t len);
void jw_cstr_e(struct evbuffer *b, const char *s);
void jw_i64_e(struct evbuffer *b, int64_t v);
void jw_raw_e(struct evbuffer *b, const char *s, size_t len);
void jw_key_e(struct evbuffer *b, const char *key);
void jw_time_us_e(struct evbuffer *b, int64_t us);
void jw_compact_e(struct evbuffer *b, const char *s, size_t len);

/* Escapes s into out (for tests); returns bytes written, out must hold 6*len+3. */
size_t jw_escape(const char *s, size_t len, char *out);

#endif
