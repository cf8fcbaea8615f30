/*
 * Import record validation (src/import_record.c, SPEC 7.1 and D17): the
 * input's lines go through irec_parse into one arena, as import.c batches
 * them. An accepted record holds what the store may rely on (a canonical
 * UUID, names of 1 to 1024 bytes, positions in range, data an object,
 * metadata an object or null, a time that formats and parses back); a
 * refused one has a known code, a message naming its line, and leaves the
 * arena as it was.
 */
#include <json-c/json.h>
#include <string.h>

#include "evlib.h"
#include "fuzz.h"
#include "import_record.h"

#define MAX_RECS 64

static struct json_tokener *tok;

static void
check_object(const char *s)
{
	json_object *o = json_tokener_parse(s);

	FUZZ_CHECK(o != NULL && json_object_is_type(o, json_type_object));
	json_object_put(o);
}

static void
check_record(const struct store_import_rec *r)
{
	char uuid[UUID_STRLEN + 1], t[RFC3339_BUFLEN];
	size_t sl = strlen(r->stream), tl = strlen(r->type);
	int64_t back;

	FUZZ_CHECK(strlen(r->id) == UUID_STRLEN);
	FUZZ_CHECK(uuid_canonical(r->id, UUID_STRLEN, uuid) == 0 && strcmp(uuid, r->id) == 0);
	FUZZ_CHECK(sl >= 1 && sl <= IREC_NAME_MAX && utf8_valid(r->stream, sl));
	FUZZ_CHECK(tl >= 1 && tl <= IREC_NAME_MAX && utf8_valid(r->type, tl));
	FUZZ_CHECK(r->position >= 0 && r->global_position >= 1);
	check_object(r->data);
	if (r->metadata != NULL)
		check_object(r->metadata);
	rfc3339_format_us(r->time_us, t);
	if (t[0] != '-' && t[4] == '-')
		FUZZ_CHECK(rfc3339_parse(t, strlen(t), false, &back) == 0 && back == r->time_us);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct store_import_rec recs[MAX_RECS];
	struct irec_arena a = {0};
	size_t n = 0;
	int64_t line = 0;

	if (tok == NULL) {
		tok = json_tokener_new_ex(65); /* as the workers' */
		FUZZ_CHECK(tok != NULL);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	}
	while (p < end && n < MAX_RECS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl != NULL ? nl : end) - p), before = a.len;
		struct irec_error e;
		char head[64];

		line++;
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (!irec_blank(p, len)) {
			e.code = NULL;
			if (irec_parse(tok, p, len, line, &a, &recs[n], &e) == 0) {
				FUZZ_CHECK(a.len > before);
				n++;
			} else {
				FUZZ_CHECK(a.len == before);
				FUZZ_CHECK(e.code != NULL);
				if (strcmp(e.code, "IMPORT_FAILED") != 0) {
					FUZZ_CHECK(strcmp(e.code, "INVALID_RECORD") == 0 || strcmp(e.code, "INVALID_JSON") == 0);
					snprintf(head, sizeof(head), " at line %lld: ", (long long)line);
					FUZZ_CHECK(strstr(e.msg, head) != NULL);
				}
			}
		}
		p += (nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p));
	}
	for (size_t i = 0; i < n; i++) {
		irec_resolve(&a, &recs[i]);
		check_record(&recs[i]);
	}
	irec_arena_free(&a);
	return 0;
}
