/*
 * The live-subscription parts of the shared region: the write ring (every
 * committed write, in append order, for the SSE subscribers of every
 * worker), one eventfd per worker to wake it, the stream index (last known
 * version and global position per stream, so a certain expectedVersion
 * conflict needs no database round trip) and per-worker subscription counts
 * (the per-namespace limit of D10). The supervisor lays these out before
 * fork (ring_init); workers read and append without blocking each other for
 * long. Offsets only, never pointers, like the rest of the region.
 */
#ifndef EVENTODB_RING_H
#define EVENTODB_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shm;
struct wbuf;

/* Longest namespace id and stream name an entry carries. A longer stream
 * (never written through our API) makes readers resync from the database. */
#define RING_NS_MAX 63
#define RING_STREAM_MAX 1024

/* One committed write as a reader sees it (pointers valid during the callback). */
struct ring_rec {
	uint64_t seq;
	const char *ns;
	size_t ns_len;
	const char *stream;
	size_t stream_len;
	int64_t position;
	int64_t gpos;
};

/* A reader's place in the ring (one per worker, private to it). */
struct ring_cursor {
	uint64_t off;   /* byte offset of the next entry */
	uint64_t seq;   /* seq of the last entry read; 0 = unknown */
	uint64_t epoch; /* resync requests seen */
};

enum ring_read_result {
	RING_OK = 0,
	RING_OVERRUN, /* the ring wrapped past the cursor: entries were lost */
	RING_RESYNC,  /* the cross-host listener asked everyone to resync */
};

/* Sizes of the two parts of the region (for shm_create_ex, with the same
 * namespace limit). */
size_t ring_index_size(void);
size_t ring_part_size(uint32_t nworkers, uint32_t ns_limit, size_t ring_bytes);
/* Lays out both parts and creates one eventfd per worker (supervisor,
 * before fork). 0, or -1 with errno set. */
int ring_init(struct shm *s, size_t ring_bytes);

/* Keyed 64-bit hash of a stream name (SipHash-2-4, key made at start). */
uint64_t ring_hash(struct shm *s, const char *p, size_t len);
uint64_t ring_siphash(const uint8_t key[16], const void *in, size_t len);
/* This server's random host id, 16 hex digits (cross-host echo filter). */
const char *ring_host_id(struct shm *s);

/* Generation of namespace ns, 0 if unknown (the stream index key); also
 * its slot in the namespace table when slot is not NULL. */
uint64_t ring_ns_generation(struct shm *s, const char *ns, uint32_t *slot);

/* Appends a committed write and notes it in the stream index. gen is the
 * namespace generation at request time. Returns 0, or -1 when the entry
 * cannot be carried (readers are told to resync instead). */
int ring_append(struct shm *s, const char *ns, uint64_t gen, const char *stream, size_t len, int64_t position,
                int64_t gpos);
/* Wakes every interested worker but self (self = UINT32_MAX: everyone). */
void ring_signal(struct shm *s, uint32_t self);
/* Asks every worker to resync its subscribers from the database (missed
 * cross-host notifications) and wakes them all. */
void ring_request_resync(struct shm *s);

/* Reader side, for worker slot. */
int ring_eventfd(struct shm *s, uint32_t slot);
/* Marks the worker (un)interested. Turning interest on moves the cursor to
 * the head: subscribers registered from now on catch up from the database. */
void ring_interest(struct shm *s, uint32_t slot, bool on, struct ring_cursor *cur);
/* Takes the wake-up: drains the eventfd, then clears the flag (call before
 * ring_read, so no append is missed and no later one goes unsignaled). */
void ring_ack(struct shm *s, uint32_t slot);
/* Calls fn for every entry after the cursor. On RING_OVERRUN or RING_RESYNC
 * the cursor is moved to the head and the caller recovers from the database. */
enum ring_read_result ring_read(struct shm *s, struct ring_cursor *cur,
                                void (*fn)(const struct ring_rec *r, void *arg), void *arg);
/* Clears a (re)started worker's slot: wake-up, interest, subscription counts. */
void ring_worker_reset(struct shm *s, uint32_t slot);

/* Stream index. Versions only grow within a namespace generation. */
void ring_index_note(struct shm *s, uint64_t gen, const char *stream, size_t len, int64_t version, int64_t gpos);
/* true when the index knows the stream is past expected (a certain
 * conflict); *actual is the version known. */
bool ring_index_conflict(struct shm *s, uint64_t gen, const char *stream, size_t len, int64_t expected,
                         int64_t *actual);
/* Forgets everything (the listener missed notifications). */
void ring_index_clear(struct shm *s);

/* Newest global position appended for namespace (slot, gen); 0 if none. */
int64_t ring_ns_last_gpos(struct shm *s, uint32_t slot, uint64_t gen);

/* Subscriptions of namespace (slot, gen) on this worker: take one unless
 * the total over all workers would exceed limit (-1), give it back. */
int ring_subs_take(struct shm *s, uint32_t worker, uint32_t ns_slot, uint64_t gen, int64_t limit);
void ring_subs_give(struct shm *s, uint32_t worker, uint32_t ns_slot, uint64_t gen);

struct ring_stats {
	uint64_t size, head, seq, appends, resyncs;
};
void ring_get_stats(struct shm *s, struct ring_stats *out);
/* "ring":{...} members for /debug/stats (size, head, seq, appends, resyncs). */
void ring_stats_json(struct shm *s, struct wbuf *b);

#endif
