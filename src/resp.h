/* A pooled response buffer (per worker): handlers write the reply body into
 * it and hand it to http_send_json; it keeps its memory across requests. */
#ifndef EVENTODB_RESP_H
#define EVENTODB_RESP_H

#include <stdint.h>

#include "wbuf.h"

struct worker;

struct resp {
	uint32_t magic;
	struct wbuf buf;
};
#define RESP_MAGIC 0x52455350u
/* A reply larger than this gives its memory back after use. */
#define RESP_KEEP (256 * 1024)

struct resp *resp_get(struct worker *w);
void resp_put(struct worker *w, struct resp *r);
void resp_free(void *obj); /* pool destructor */

#endif
