/* GET /metrics: Prometheus text format from the shared stats (src/metrics.c). */
#ifndef EVENTODB_METRICS_H
#define EVENTODB_METRICS_H

struct http_req;
struct shm;
struct wbuf;

void metrics_handle(struct http_req *req);
/* The exposition of the whole server into b. */
void metrics_write(struct shm *shm, struct wbuf *b);

#endif
