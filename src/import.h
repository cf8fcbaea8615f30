/*
 * POST /import (SPEC 7.1, D8): NDJSON records in, SSE-formatted events out,
 * the body streamed by the connection layer (HTTP_BODY_STREAM).
 */
#ifndef EVENTODB_IMPORT_H
#define EVENTODB_IMPORT_H

struct http_req;

/* The /import handler (src/router.c). */
void import_handle(struct http_req *req);

#endif
