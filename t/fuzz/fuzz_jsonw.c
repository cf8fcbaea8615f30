/*
 * The JSON writer (src/jsonw.c): a string written with jw_str parses back
 * (json-c, strict) to exactly the input, whatever bytes it holds (valid
 * UTF-8, as every caller checks first); the output carries no raw control
 * character, '<', '>', '&', U+2028 or U+2029 (Go's escaping); jw_escape
 * writes the same bytes; integers and times parse back to their values.
 */
#include <event2/buffer.h>
#include <json-c/json.h>
#include <string.h>

#include "evlib.h"
#include "fuzz.h"
#include "jsonw.h"

static struct json_tokener *tok;

static json_object *
parse(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	const char *s = (const char *)evbuffer_pullup(b, -1);
	json_object *o;

	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) == json_tokener_continue) /* a bare number: flush */
		o = json_tokener_parse_ex(tok, "", 1);
	else /* nothing after the value */
		FUZZ_CHECK(json_tokener_get_parse_end(tok) == n);
	FUZZ_CHECK(json_tokener_get_error(tok) == json_tokener_success);
	return o;
}

static void
check_string(const char *s, size_t n)
{
	struct evbuffer *b = evbuffer_new();
	const unsigned char *out;
	char *esc = malloc(6 * n + 3);
	size_t len, elen;
	json_object *o;

	FUZZ_CHECK(b != NULL && esc != NULL);
	jw_str(b, s, n);
	len = evbuffer_get_length(b);
	out = evbuffer_pullup(b, -1);
	for (size_t i = 0; i < len; i++) {
		FUZZ_CHECK(out[i] >= 0x20 && out[i] != '<' && out[i] != '>' && out[i] != '&');
		FUZZ_CHECK(!(i + 2 < len && out[i] == 0xe2 && out[i + 1] == 0x80 && (out[i + 2] & 0xfe) == 0xa8));
	}
	elen = jw_escape(s, n, esc);
	FUZZ_CHECK(elen == len && memcmp(esc, out, len) == 0 && esc[elen] == '\0');
	o = parse(b);
	FUZZ_CHECK(json_object_is_type(o, json_type_string));
	FUZZ_CHECK((size_t)json_object_get_string_len(o) == n);
	FUZZ_CHECK(memcmp(json_object_get_string(o), s, n) == 0);
	json_object_put(o);
	free(esc);
	evbuffer_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	if (tok == NULL) {
		tok = json_tokener_new_ex(8);
		FUZZ_CHECK(tok != NULL);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	}
	if (utf8_valid(s, size))
		check_string(s, size);
	if (size >= 8) {
		struct evbuffer *b = evbuffer_new();
		json_object *o;
		int64_t v, back;
		char t[RFC3339_BUFLEN];

		FUZZ_CHECK(b != NULL);
		memcpy(&v, data, 8);
		jw_i64(b, v);
		o = parse(b);
		FUZZ_CHECK(json_object_is_type(o, json_type_int) && json_object_get_int64(o) == v);
		json_object_put(o);
		evbuffer_drain(b, evbuffer_get_length(b));
		jw_time_us(b, v);
		o = parse(b);
		FUZZ_CHECK(json_object_is_type(o, json_type_string));
		rfc3339_format_us(v, t);
		FUZZ_CHECK(strcmp(json_object_get_string(o), t) == 0);
		if (t[0] != '-' && t[4] == '-')
			FUZZ_CHECK(rfc3339_parse(t, strlen(t), false, &back) == 0 && back == v);
		json_object_put(o);
		evbuffer_free(b);
	}
	return 0;
}
