/*
 * Spans of JSON text: where a value sits in a request body that json-c has
 * already accepted, so stream.write can store data and metadata exactly as
 * the client wrote them (integers beyond 64 bits, number spellings, key
 * order) without re-serializing json-c's tree; and the compact form of such
 * text (insignificant whitespace removed, strings untouched). No
 * allocation; linear in the text.
 *
 * The span functions assume valid JSON (json-c strict mode accepted it)
 * and never read outside [s, s+n) whatever they are given.
 */
#ifndef EVENTODB_JSONSPAN_H
#define EVENTODB_JSONSPAN_H

#include <stdbool.h>
#include <stddef.h>

/* The i-th element (from 0) of the array that s is. */
bool jspan_elem(const char *s, size_t n, size_t i, const char **at, size_t *len);
/* The value of member key of the object that s is (the last one when a
 * key repeats: json-c keeps the last). Keys are compared decoded. */
bool jspan_member(const char *s, size_t n, const char *key, const char **at, size_t *len);

/* Object members in the JSON text s, at every depth (one ':' outside
 * strings each): against json-c's tree, which keeps one member per key,
 * more here means a key repeats somewhere. */
size_t jspan_count_members(const char *s, size_t n);

/* The compact copy of JSON text s into out (room for n bytes); returns its
 * length, or -1 when a string holds a \u escape of an unpaired UTF-16
 * surrogate (PostgreSQL's jsonb refuses those; both stores answer alike). */
long jspan_compact(const char *s, size_t n, char *out);

#endif
