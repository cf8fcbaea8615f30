/*
 * One NDJSON line of an import (SPEC 7.1, D17) to a record or an error:
 * parsed with json-c, validated, its strings copied into an arena. No I/O
 * and no worker state, so import.c and the fuzz target call the same code.
 */
#ifndef EVENTODB_IMPORT_RECORD_H
#define EVENTODB_IMPORT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct json_tokener;

#define IREC_LINE_MAX (1024 * 1024) /* the reference's bufio.Scanner limit */
#define IREC_NAME_MAX 1024          /* stream and type, as everywhere (D14) */

/* A growing block of NUL-terminated strings. */
struct irec_arena {
	char *buf;
	size_t len, cap;
};

struct irec_error {
	const char *code; /* INVALID_JSON, INVALID_RECORD or IMPORT_FAILED (out of memory) */
	char msg[600];
};

/*
 * Parses and validates line (n bytes, no line end, not blank), line number
 * lineno of the input. On success fills *r and returns 0: its strings are
 * in the arena, and until irec_resolve the string fields hold arena offsets
 * + 1, since the arena moves as it grows. Otherwise returns -1 with *err
 * set and the arena as it was. tok (json_tokener_new_ex(64) or deeper) is
 * reset and reused.
 */
int irec_parse(struct json_tokener *tok, const char *line, size_t n, int64_t lineno, struct irec_arena *a,
               struct store_import_rec *r, struct irec_error *err);
/* Turns the offsets of a record parsed into a into pointers; no more
 * irec_parse into a until it is reset. */
void irec_resolve(const struct irec_arena *a, struct store_import_rec *r);
/* Empties the arena; frees its block when it grew beyond keep bytes. */
void irec_arena_reset(struct irec_arena *a, size_t keep);
void irec_arena_free(struct irec_arena *a);

/* Only JSON whitespace (and \v, \f): such lines are skipped. */
bool irec_blank(const char *s, size_t n);

#endif
