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
#define SHM_NS_LIMIT_MAX 262144 /* largest --max-namespaces */

/* A mutex that lives in the region: robust, so a worker that dies holding
 * it cannot wedge the others; owner pid recorded for the supervisor. */
struct shm_lock {
	pthread_mutex_t mu;
	volatile pid_t owner;
};

enum shm_ns_state {
	SHM_NS_EMPTY = 0,    /* never used, or cleaned: a probe ends here */
	SHM_NS_USED = 1,     /* a namespace that authenticates */
	SHM_NS_DELETED = 2,  /* tombstone: probes go on past it; reused by inserts */
	SHM_NS_RESERVED = 3, /* being created: counts toward the limit, does not authenticate */
};

struct shm_ns {
	uint8_t state; /* enum shm_ns_state */
	char id[SHM_NS_ID_MAX];
	uint8_t token_hash[32];
	uint64_t generation; /* used: the incarnation; reserved: the reservation */
	pid_t owner;         /* reserved: the process that reserved it */
};

struct shm_worker {
	volatile pid_t pid;
	volatile uint32_t ready;   /* set by the worker once it serves requests */
	volatile int64_t started_us;
	/* live, for the other workers' accept balancing (conn_server.c): open
	 * client connections, and whether the worker accepts new ones now */
	volatile uint32_t conns;
	volatile uint32_t accepting;
	struct stats st;
	/* next to the counters: the request latency histogram (one count per
	 * request in the bucket of its latency) and RPC answers per method and
	 * status class (see stats.h) */
	uint64_t latency[LATENCY_NBUCKETS];
	uint64_t rpc_class[RPC_NMETHODS][RPC_NCLASSES];
};

struct shm_header {
	uint32_t magic;
	uint32_t layout_version;
	uint64_t total_size;
	uint32_t nworkers;
	uint32_t ns_capacity;      /* table slots, a power of two, at least twice ns_limit */
	uint32_t ns_limit;         /* namespaces it may hold (--max-namespaces) */
	uint64_t ns_offset;
	uint64_t workers_offset;
	uint64_t index_offset;     /* stream index: 0 until it exists */
	uint64_t ring_offset;      /* write ring: 0 until it exists */
	uint64_t prof_offset;      /* profiling part: 0 until it exists */
	struct shm_lock ns_lock;
	volatile uint64_t ns_generation; /* bumped by every create/delete */
	volatile uint32_t ns_count;      /* used + reserved slots */
	volatile int64_t started_us;     /* the server's start (supervisor) */
	volatile uint64_t worker_restarts; /* workers respawned after dying */
};

struct shm;

/* A region whose namespace table holds ns_limit namespaces (at most
 * SHM_NS_LIMIT_MAX). */
struct shm *shm_create(uint32_t nworkers, uint32_t ns_limit);
/* Also reserves the stream index and write ring parts (ring.h) of the given
 * sizes; their offsets land in the header (0 when a size is 0). */
struct shm *shm_create_ex(uint32_t nworkers, uint32_t ns_limit, size_t index_size, size_t ring_size);
/* Also reserves the profiling part (profile.h) of prof_size bytes. */
struct shm *shm_create_parts(uint32_t nworkers, uint32_t ns_limit, size_t index_size, size_t ring_size,
                             size_t prof_size);
/* Slots of the table that holds ns_limit namespaces (what ring.c sizes its
 * per-slot arrays by). */
uint32_t shm_ns_table_slots(uint32_t ns_limit);
/* Address of an offset in the region. */
void *shm_at(struct shm *s, uint64_t offset);
void shm_destroy(struct shm *s);
struct shm_header *shm_header(struct shm *s);
struct shm_worker *shm_worker(struct shm *s, uint32_t slot);

/*
 * Namespace table: open addressing (linear probing) with tombstones, keyed
 * by the id. Slots are never moved, because the write ring keeps per-slot
 * arrays keyed by (slot, generation): a deleted slot is reused by a later
 * insert, and the new generation tells the ring it is another namespace.
 *
 * shm_ns_put adds id or changes its hash (a reservation of id becomes the
 * namespace): 0, or -1 when the table holds its limit already.
 */
int shm_ns_put(struct shm *s, const char *id, const uint8_t token_hash[32]);
/* true if id authenticates (copies the hash). */
bool shm_ns_get(struct shm *s, const char *id, uint8_t token_hash[32]);
bool shm_ns_remove(struct shm *s, const char *id);

/*
 * Creating a namespace: reserve its place before the store creates it, so
 * the limit is checked (and held) under the table's lock across workers.
 *   SHM_NS_RESERVE_FULL: no room; create nothing.
 *   SHM_NS_RESERVE_PRESENT: id is there already (or being created): let
 *     the store answer.
 *   SHM_NS_RESERVE_OK: *ticket names the reservation; after the store
 *     call, shm_ns_put makes it the namespace, or shm_ns_release gives it
 *     back. A worker that dies in between leaves it to the supervisor
 *     (shm_release_dead).
 */
enum shm_ns_reserve_result { SHM_NS_RESERVE_OK, SHM_NS_RESERVE_PRESENT, SHM_NS_RESERVE_FULL };
enum shm_ns_reserve_result shm_ns_reserve(struct shm *s, const char *id, uint64_t *ticket);
/* Gives a reservation back (nothing when it is no longer that one). */
void shm_ns_release(struct shm *s, const char *id, uint64_t ticket);
/* The message of a NAMESPACE_LIMIT answer. */
void shm_ns_limit_message(struct shm *s, char *buf, size_t cap);
/* true if id authenticates: its slot in the table and its generation (new
 * on every create or token change, so it names one incarnation of the
 * namespace). */
bool shm_ns_lookup(struct shm *s, const char *id, uint32_t *slot, uint64_t *generation);

/* Robust process-shared locks for other parts of the region (ring.c).
 * shm_lock_take returns true when the previous holder died holding it:
 * the caller repairs what the lock guards. */
int shm_lock_init(struct shm_lock *l);
bool shm_lock_take(struct shm_lock *l);
void shm_lock_give(struct shm_lock *l);

/* Releases the namespace lock if a dead process holds it, and the
 * reservations it left behind (supervisor). */
void shm_release_dead(struct shm *s, pid_t dead);

/* Sum of every worker's stats. */
void shm_stats_sum(struct shm *s, struct stats *out);

#endif
