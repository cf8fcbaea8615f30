/*
 * The shared region: one anonymous MAP_SHARED mapping made by the supervisor
 * before fork. A header (magic, layout version, sizes, offsets), the
 * namespace table (auth without a database query) and one stats slot per
 * worker. Offsets only, never pointers. The stream index and write ring
 * (live subscriptions) and the profiling part (profile.c: profile requests
 * to every worker, published pool counters, allocation counters) get their
 * own offsets in the header.
 */
#ifndef EVENTODB_SHM_H
#define EVENTODB_SHM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "stats.h"

#define SHM_MAGIC 0x45564f44u /* "EVOD" */
#define SHM_LAYOUT_VERSION 2
#define SHM_NS_ID_MAX 64

/* A mutex that lives in the region: robust, so a worker that dies holding
 * it cannot wedge the others; owner pid recorded for the supervisor. */
struct shm_lock {
	pthread_mutex_t mu;
	volatile pid_t owner;
};

struct shm_ns {
	uint8_t state; /* 0 empty, 1 used, 2 deleted (tombstone) */
	char id[SHM_NS_ID_MAX];
	uint8_t token_hash[32];
	uint64_t generation;
};

struct shm_worker {
	volatile pid_t pid;
	volatile uint32_t ready;   /* set by the worker once it serves requests */
	volatile int64_t started_us;
	struct stats st;
};

struct shm_header {
	uint32_t magic;
	uint32_t layout_version;
	uint64_t total_size;
	uint32_t nworkers;
	uint32_t ns_capacity;      /* power of two */
	uint64_t ns_offset;
	uint64_t workers_offset;
	uint64_t index_offset;     /* stream index: 0 until it exists */
	uint64_t ring_offset;      /* write ring: 0 until it exists */
	uint64_t prof_offset;      /* profiling part: 0 until it exists */
	struct shm_lock ns_lock;
	volatile uint64_t ns_generation; /* bumped by every create/delete */
	volatile uint32_t ns_count;
};

struct shm;

struct shm *shm_create(uint32_t nworkers, uint32_t ns_capacity);
/* Also reserves the stream index and write ring parts (ring.h) of the given
 * sizes; their offsets land in the header (0 when a size is 0). */
struct shm *shm_create_ex(uint32_t nworkers, uint32_t ns_capacity, size_t index_size, size_t ring_size);
/* Also reserves the profiling part (profile.h) of prof_size bytes. */
struct shm *shm_create_parts(uint32_t nworkers, uint32_t ns_capacity, size_t index_size, size_t ring_size,
                             size_t prof_size);
/* Address of an offset in the region. */
void *shm_at(struct shm *s, uint64_t offset);
void shm_destroy(struct shm *s);
struct shm_header *shm_header(struct shm *s);
struct shm_worker *shm_worker(struct shm *s, uint32_t slot);

/* Namespace table. 0 on success; -1 when the table is full. */
int shm_ns_put(struct shm *s, const char *id, const uint8_t token_hash[32]);
/* true if found (copies the hash). */
bool shm_ns_get(struct shm *s, const char *id, uint8_t token_hash[32]);
bool shm_ns_remove(struct shm *s, const char *id);
/* true if found: its slot in the table and its generation (new on every
 * create or token change, so it names one incarnation of the namespace). */
bool shm_ns_lookup(struct shm *s, const char *id, uint32_t *slot, uint64_t *generation);

/* Robust process-shared locks for other parts of the region (ring.c).
 * shm_lock_take returns true when the previous holder died holding it:
 * the caller repairs what the lock guards. */
int shm_lock_init(struct shm_lock *l);
bool shm_lock_take(struct shm_lock *l);
void shm_lock_give(struct shm_lock *l);

/* Releases the namespace lock if a dead process holds it (supervisor). */
void shm_release_dead(struct shm *s, pid_t dead);

/* Sum of every worker's stats. */
void shm_stats_sum(struct shm *s, struct stats *out);

#endif
