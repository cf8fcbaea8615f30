/*
 * Import records (SPEC 7.1, D17): one NDJSON line to a record or an error,
 * with the strings of the record in an arena. import.c reads the lines of a
 * request body and batches the records; the fuzz target t/fuzz/
 * fuzz_import_record.c calls irec_parse on arbitrary lines.
 */
#include "autoconf.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evlib.h"
#include "import_record.h"
#include "jsonnum.h"

static int errf(struct irec_error *e, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
errf(struct irec_error *e, const char *code, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	va_start(ap, fmt);
	utf8_vsnprintf(e->msg, sizeof(e->msg), fmt, ap); /* cut on a character boundary: client text */
	va_end(ap);
	return -1;
}

/* ---- the arena ------------------------------------------------------------- */

/* Copies s into the arena; offset + 1 (0 when out of memory). */
static uintptr_t
arena_put(struct irec_arena *a, const char *s, size_t n)
{
	uintptr_t off;

	if (a->len + n + 1 > a->cap) {
		size_t cap = a->cap ? a->cap : 64 * 1024;
		char *p;

		while (cap < a->len + n + 1)
			cap *= 2;
		if ((p = realloc(a->buf, cap)) == NULL)
			return 0;
		a->buf = p;
		a->cap = cap;
	}
	off = a->len;
	memcpy(a->buf + off, s, n);
	a->buf[off + n] = '\0';
	a->len += n + 1;
	return off + 1;
}

static const char *
arena_ptr(const struct irec_arena *a, const char *p)
{
	uintptr_t v = (uintptr_t)p;

	return v == 0 ? NULL : a->buf + (v - 1);
}

void
irec_resolve(const struct irec_arena *a, struct store_import_rec *r)
{
	r->id = arena_ptr(a, r->id);
	r->stream = arena_ptr(a, r->stream);
	r->type = arena_ptr(a, r->type);
	r->data = arena_ptr(a, r->data);
	r->metadata = arena_ptr(a, r->metadata);
}

void
irec_arena_reset(struct irec_arena *a, size_t keep)
{
	a->len = 0;
	if (a->cap > keep) {
		free(a->buf);
		a->buf = NULL;
		a->cap = 0;
	}
}

void
irec_arena_free(struct irec_arena *a)
{
	free(a->buf);
	a->buf = NULL;
	a->len = a->cap = 0;
}

/* ---- validation ------------------------------------------------------------- */

bool
irec_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\v' && s[i] != '\f')
			return false;
	return true;
}

/* A \u0000 escape outside an escaped backslash (see rpc.c). */
static bool
has_nul_escape(const char *s, size_t len)
{
	for (size_t i = 0; i + 5 < len; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++;
	}
	return false;
}

static const char *
name_field(json_object *rec, const char *key, size_t *len)
{
	json_object *o;

	if (!json_object_object_get_ex(rec, key, &o) || !json_object_is_type(o, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(o);
	if (*len < 1 || *len > IREC_NAME_MAX)
		return NULL;
	return json_object_get_string(o);
}

/* An integer field at least min; false when absent, not an integer or out of range. */
static bool
int_field(json_object *rec, const char *key, int64_t min, int64_t *v)
{
	json_object *o;

	if (!json_object_object_get_ex(rec, key, &o) || !json_object_is_type(o, json_type_int))
		return false;
	*v = json_object_get_int64(o);
	/* json-c keeps integers above INT64_MAX as uint64 */
	if (*v == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
		return false;
	return *v >= min;
}

static const char *
json_text(json_object *o, size_t *len)
{
	return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

/* The parsed line: a value and nothing after it but blanks, or NULL with
 * the error (the JSON null parses to NULL with no error). */
static json_object *
parse(struct json_tokener *tok, const char *p, size_t n, enum json_tokener_error *jerr)
{
	json_object *rec;
	size_t end;

	json_tokener_reset(tok);
	rec = json_tokener_parse_ex(tok, p, (int)n);
	*jerr = json_tokener_get_error(tok);
	if (*jerr == json_tokener_continue) {
		/* a value that ends with the input ("5", "nul"): flush */
		rec = json_tokener_parse_ex(tok, "", 1);
		*jerr = json_tokener_get_error(tok);
	} else if (*jerr == json_tokener_success) {
		end = json_tokener_get_parse_end(tok);
		if (!irec_blank(p + end, n - end)) {
			json_object_put(rec);
			rec = NULL;
			*jerr = json_tokener_error_parse_unexpected;
		}
	}
	return rec;
}

int
irec_parse(struct json_tokener *tok, const char *p, size_t n, int64_t lineno, struct irec_arena *a,
           struct store_import_rec *r, struct irec_error *err)
{
	enum json_tokener_error jerr;
	json_object *rec = NULL, *o;
	const char *stream, *type, *tstr, *data, *meta = NULL;
	size_t slen, tlen, tslen, dlen, mlen = 0, mark = a->len;
	char uuid[UUID_STRLEN + 1];
	int64_t pos, gpos, t_us;
	long long L = (long long)lineno;
	char *wide = NULL;
	size_t big;
	int rc = -1;

	if (n > IREC_LINE_MAX) /* the caller's limit; json-c takes an int */
		return errf(err, "INVALID_RECORD", "invalid record at line %lld: longer than %d bytes", L,
		            IREC_LINE_MAX);
	if (!utf8_valid(p, n))
		return errf(err, "INVALID_RECORD", "invalid record at line %lld: not valid UTF-8", L);
	if ((big = jsonnum_bigints(p, n)) > 0) {
		/* integers beyond 64 bits stay numbers, as doubles */
		if ((wide = malloc(n + 2 * big + 1)) == NULL)
			return errf(err, "IMPORT_FAILED", "out of memory");
		n = jsonnum_widen(p, n, wide);
		p = wide;
	}
	rec = parse(tok, p, n, &jerr);
	if (jerr == json_tokener_error_depth) {
		errf(err, "INVALID_RECORD", "invalid record at line %lld: nested deeper than 64 levels", L);
		goto out;
	}
	if (jerr != json_tokener_success) {
		errf(err, "INVALID_JSON", "malformed JSON at line %lld: %s", L, json_tokener_error_desc(jerr));
		goto out;
	}
	if (rec != NULL && !json_object_is_type(rec, json_type_object)) {
		errf(err, "INVALID_JSON", "malformed JSON at line %lld: a record must be a JSON object", L);
		goto out;
	}
	if (has_nul_escape(p, n)) {
		errf(err, "INVALID_RECORD", "invalid record at line %lld: strings must not contain \\u0000", L);
		goto out;
	}
	/* (null is the zero record of the reference: it fails below) */
#define BAD(...)                                                                                                       \
	do {                                                                                                           \
		char why_[256];                                                                                        \
		utf8_snprintf(why_, sizeof(why_), __VA_ARGS__);                                                        \
		errf(err, "INVALID_RECORD", "invalid record at line %lld: %s", L, why_);                               \
		goto out;                                                                                              \
	} while (0)
	if (rec == NULL || !json_object_object_get_ex(rec, "id", &o) || !json_object_is_type(o, json_type_string) ||
	    uuid_canonical(json_object_get_string(o), (size_t)json_object_get_string_len(o), uuid) != 0)
		BAD("id must be a UUID");
	if ((stream = name_field(rec, "stream", &slen)) == NULL)
		BAD("stream must be a non-empty string of at most %d bytes", IREC_NAME_MAX);
	if ((type = name_field(rec, "type", &tlen)) == NULL)
		BAD("type must be a non-empty string of at most %d bytes", IREC_NAME_MAX);
	if (!int_field(rec, "pos", 0, &pos))
		BAD("pos must be a non-negative integer");
	if (!int_field(rec, "gpos", 1, &gpos))
		BAD("gpos must be an integer of at least 1");
	if (!json_object_object_get_ex(rec, "data", &o) || !json_object_is_type(o, json_type_object))
		BAD("data must be an object");
	data = json_text(o, &dlen);
	if (json_object_object_get_ex(rec, "meta", &o) && o != NULL) {
		if (!json_object_is_type(o, json_type_object))
			BAD("meta must be an object or null");
		meta = json_text(o, &mlen);
	}
	if (!json_object_object_get_ex(rec, "time", &o) || !json_object_is_type(o, json_type_string))
		BAD("invalid time format: time must be an RFC 3339 string");
	tstr = json_object_get_string(o);
	tslen = (size_t)json_object_get_string_len(o);
	if (rfc3339_parse(tstr, tslen, false, &t_us) != 0)
		BAD("invalid time format: parsing time \"%.*s\" as RFC 3339 failed", (int)utf8_prefix(tstr, tslen, 64),
		    tstr);
#undef BAD
	memset(r, 0, sizeof(*r));
	r->position = pos;
	r->global_position = gpos;
	r->time_us = t_us;
	if ((r->id = (const char *)arena_put(a, uuid, UUID_STRLEN)) == NULL ||
	    (r->stream = (const char *)arena_put(a, stream, slen)) == NULL ||
	    (r->type = (const char *)arena_put(a, type, tlen)) == NULL ||
	    (r->data = (const char *)arena_put(a, data, dlen)) == NULL ||
	    (meta != NULL && (r->metadata = (const char *)arena_put(a, meta, mlen)) == NULL)) {
		a->len = mark;
		errf(err, "IMPORT_FAILED", "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_object_put(rec);
	free(wide);
	return rc;
}
