/*
 * JSON number handling (src/jsonnum.c): widening adds exactly ".0" to each
 * integer literal json-c would clamp and nothing else, leaves none to widen,
 * and turns every JSON text json-c accepts into one it still accepts, with
 * the same values except that those integers become doubles.
 */
#include <json-c/json.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "jsonnum.h"

static struct json_tokener *tok;

static json_object *
parse(const char *s, size_t n, int *ok)
{
	json_object *o;
	size_t end;

	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) == json_tokener_continue)
		o = json_tokener_parse_ex(tok, "", 1);
	*ok = json_tokener_get_error(tok) == json_tokener_success;
	if (*ok && (end = json_tokener_get_parse_end(tok)) < n) {
		for (; end < n; end++)
			if (s[end] != ' ' && s[end] != '\t' && s[end] != '\n' && s[end] != '\r')
				*ok = 0;
	}
	if (!*ok) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

/* v (from the input) and w (from the widened input) hold the same values. */
static void
same(json_object *v, json_object *w)
{
	enum json_type tv = json_object_get_type(v), tw = json_object_get_type(w);

	if (tv == json_type_int && tw == json_type_double) {
		/* a clamped integer, now a double beyond the 64-bit range */
		double d = json_object_get_double(w);
		FUZZ_CHECK(fabs(d) >= 9.2e18);
		return;
	}
	FUZZ_CHECK(tv == tw);
	switch (tv) {
	case json_type_null:
		break;
	case json_type_boolean:
		FUZZ_CHECK(json_object_get_boolean(v) == json_object_get_boolean(w));
		break;
	case json_type_int:
		FUZZ_CHECK(json_object_get_int64(v) == json_object_get_int64(w));
		FUZZ_CHECK(json_object_get_uint64(v) == json_object_get_uint64(w));
		break;
	case json_type_double: {
		double a = json_object_get_double(v), b = json_object_get_double(w);
		FUZZ_CHECK(a == b || (isnan(a) && isnan(b)));
		break;
	}
	case json_type_string:
		FUZZ_CHECK(json_object_get_string_len(v) == json_object_get_string_len(w));
		FUZZ_CHECK(memcmp(json_object_get_string(v), json_object_get_string(w),
		                  (size_t)json_object_get_string_len(v)) == 0);
		break;
	case json_type_array:
		FUZZ_CHECK(json_object_array_length(v) == json_object_array_length(w));
		for (size_t i = 0; i < json_object_array_length(v); i++)
			same(json_object_array_get_idx(v, i), json_object_array_get_idx(w, i));
		break;
	case json_type_object:
		FUZZ_CHECK(json_object_object_length(v) == json_object_object_length(w));
		json_object_object_foreach(v, k, x)
		{
			json_object *y;
			FUZZ_CHECK(json_object_object_get_ex(w, k, &y));
			same(x, y);
		}
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t k = jsonnum_bigints(s, size), n, i, j;
	char *w = malloc(size + 2 * k + 1);
	json_object *v, *x;
	int okv, okw;

	FUZZ_CHECK(w != NULL);
	if (tok == NULL) {
		tok = json_tokener_new_ex(65);
		FUZZ_CHECK(tok != NULL);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	}
	n = jsonnum_widen(s, size, w);
	FUZZ_CHECK(n == size + 2 * k && w[n] == '\0');
	FUZZ_CHECK(jsonnum_bigints(w, n) == 0);
	/* the input again once k ".0" insertions are taken out */
	for (i = 0, j = 0; i < n; i++) {
		if (j < size && w[i] == s[j]) {
			j++;
			continue;
		}
		FUZZ_CHECK(i + 1 < n && w[i] == '.' && w[i + 1] == '0');
		i++;
	}
	FUZZ_CHECK(j == size);
	if (k == 0)
		FUZZ_CHECK(memcmp(w, s, size) == 0);
	v = parse(s, size, &okv);
	x = parse(w, n, &okw);
	if (okv) {
		FUZZ_CHECK(okw);
		same(v, x);
	}
	json_object_put(v);
	json_object_put(x);
	free(w);
	return 0;
}
