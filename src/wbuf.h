/*
 * A growable byte buffer that keeps its memory across uses: responses, request
 * heads and bodies, pending output. Reused buffers make the steady state
 * allocation-free (an evbuffer frees its chains whenever it is drained).
 * An allocation failure is sticky: later appends are dropped and `failed`
 * tells the owner to answer 500 instead of sending half a body.
 */
#ifndef EVENTODB_WBUF_H
#define EVENTODB_WBUF_H

#include <stdbool.h>
#include <stddef.h>

struct wbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

/* Room for n more bytes; false (and failed set) when out of memory. */
bool wb_reserve(struct wbuf *b, size_t n);
void wb_add(struct wbuf *b, const void *p, size_t n);
#define wb_lit(b, lit) wb_add((b), (lit), sizeof(lit) - 1)
/* Empties the buffer; frees its memory when it grew past keep bytes. */
void wb_reset(struct wbuf *b, size_t keep);
/* Drops the first n bytes. */
void wb_consume(struct wbuf *b, size_t n);
void wb_free(struct wbuf *b);

#endif
