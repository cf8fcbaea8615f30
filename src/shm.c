/*
 * The shared region. Created once by the supervisor; workers inherit the
 * mapping across fork. The namespace table is open addressing keyed by a hash
 * of the id, guarded by a robust process-shared mutex: lookups are short
 * and uncontended, so a seqlock would buy nothing measurable here.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

struct shm {
	void *base;
	size_t size;
};

static size_t
align64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static int
lock_init(struct shm_lock *l)
{
	pthread_mutexattr_t a;

	if (pthread_mutexattr_init(&a) != 0 || pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
	    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0 || pthread_mutex_init(&l->mu, &a) != 0)
		return -1;
	pthread_mutexattr_destroy(&a);
	l->owner = 0;
	return 0;
}

/* true when the previous holder died holding the lock. */
static bool
lock_take(struct shm_lock *l)
{
	int rc = pthread_mutex_lock(&l->mu);

	if (rc == EOWNERDEAD) {
		/* The holder died mid-update; the table entries are written so that
		 * a half-done update is still a consistent table (state set last). */
		log_warn("shared lock held by dead process %d recovered", (int)l->owner);
		pthread_mutex_consistent(&l->mu);
	} else if (rc != 0) {
		log_error("shared lock: %s", strerror(rc));
		abort();
	}
	l->owner = getpid();
	return rc == EOWNERDEAD;
}

static void
lock_give(struct shm_lock *l)
{
	l->owner = 0;
	pthread_mutex_unlock(&l->mu);
}

int
shm_lock_init(struct shm_lock *l)
{
	return lock_init(l);
}

bool
shm_lock_take(struct shm_lock *l)
{
	return lock_take(l);
}

void
shm_lock_give(struct shm_lock *l)
{
	lock_give(l);
}

struct shm *
shm_create(uint32_t nworkers, uint32_t ns_capacity)
{
	return shm_create_ex(nworkers, ns_capacity, 0, 0);
}

struct shm *
shm_create_ex(uint32_t nworkers, uint32_t ns_capacity, size_t index_size, size_t ring_size)
{
	return shm_create_parts(nworkers, ns_capacity, index_size, ring_size, 0);
}

struct shm *
shm_create_parts(uint32_t nworkers, uint32_t ns_capacity, size_t index_size, size_t ring_size, size_t prof_size)
{
	struct shm *s;
	struct shm_header *h;
	size_t ns_off, w_off, ix_off, r_off, p_off, size;
	uint32_t cap = 16;

	while (cap < ns_capacity)
		cap <<= 1;
	ns_off = align64(sizeof(struct shm_header));
	w_off = align64(ns_off + (size_t)cap * sizeof(struct shm_ns));
	ix_off = align64(w_off + (size_t)nworkers * align64(sizeof(struct shm_worker)));
	r_off = align64(ix_off + index_size);
	p_off = align64(r_off + ring_size);
	size = align64(p_off + prof_size);

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s->base == MAP_FAILED) {
		free(s);
		return NULL;
	}
	s->size = size;
	h = s->base;
	h->layout_version = SHM_LAYOUT_VERSION;
	h->total_size = size;
	h->nworkers = nworkers;
	h->ns_capacity = cap;
	h->ns_offset = ns_off;
	h->workers_offset = w_off;
	h->index_offset = index_size > 0 ? ix_off : 0;
	h->ring_offset = ring_size > 0 ? r_off : 0;
	h->prof_offset = prof_size > 0 ? p_off : 0;
	if (lock_init(&h->ns_lock) != 0) {
		munmap(s->base, size);
		free(s);
		return NULL;
	}
	h->magic = SHM_MAGIC;
	return s;
}

void
shm_destroy(struct shm *s)
{
	if (s == NULL)
		return;
	munmap(s->base, s->size);
	free(s);
}

struct shm_header *
shm_header(struct shm *s)
{
	return s->base;
}

void *
shm_at(struct shm *s, uint64_t offset)
{
	return (char *)s->base + offset;
}

struct shm_worker *
shm_worker(struct shm *s, uint32_t slot)
{
	struct shm_header *h = s->base;

	return (struct shm_worker *)((char *)s->base + h->workers_offset + slot * align64(sizeof(struct shm_worker)));
}

static struct shm_ns *
ns_table(struct shm *s)
{
	struct shm_header *h = s->base;

	return (struct shm_ns *)((char *)s->base + h->ns_offset);
}

static uint32_t
ns_hash(const char *id)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* Slot holding id, or NULL. Caller holds the lock. */
static struct shm_ns *
ns_find(struct shm *s, const char *id)
{
	struct shm_header *h = s->base;
	struct shm_ns *t = ns_table(s);
	uint32_t mask = h->ns_capacity - 1, i = ns_hash(id) & mask;

	for (uint32_t n = 0; n < h->ns_capacity; n++, i = (i + 1) & mask) {
		if (t[i].state == 0)
			return NULL;
		if (t[i].state == 1 && strcmp(t[i].id, id) == 0)
			return &t[i];
	}
	return NULL;
}

int
shm_ns_put(struct shm *s, const char *id, const uint8_t token_hash[32])
{
	struct shm_header *h = s->base;
	struct shm_ns *t = ns_table(s), *e;
	uint32_t mask = h->ns_capacity - 1, i = ns_hash(id) & mask;
	int rc = -1;

	if (strlen(id) >= SHM_NS_ID_MAX)
		return -1;
	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL) {
		memcpy(e->token_hash, token_hash, 32);
		e->generation = ++h->ns_generation;
		rc = 0;
	} else if (h->ns_count + 1 < h->ns_capacity) { /* keep one empty slot so probes end */
		for (uint32_t n = 0; n < h->ns_capacity; n++, i = (i + 1) & mask) {
			if (t[i].state != 1) {
				strcpy(t[i].id, id);
				memcpy(t[i].token_hash, token_hash, 32);
				t[i].generation = ++h->ns_generation;
				t[i].state = 1;
				h->ns_count++;
				rc = 0;
				break;
			}
		}
	}
	lock_give(&h->ns_lock);
	return rc;
}

bool
shm_ns_get(struct shm *s, const char *id, uint8_t token_hash[32])
{
	struct shm_header *h = s->base;
	struct shm_ns *e;

	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL)
		memcpy(token_hash, e->token_hash, 32);
	lock_give(&h->ns_lock);
	return e != NULL;
}

bool
shm_ns_lookup(struct shm *s, const char *id, uint32_t *slot, uint64_t *generation)
{
	struct shm_header *h = s->base;
	struct shm_ns *e;

	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL) {
		*slot = (uint32_t)(e - ns_table(s));
		*generation = e->generation;
	}
	lock_give(&h->ns_lock);
	return e != NULL;
}

bool
shm_ns_remove(struct shm *s, const char *id)
{
	struct shm_header *h = s->base;
	struct shm_ns *e;

	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL) {
		e->state = 2;
		memset(e->token_hash, 0, 32);
		h->ns_count--;
		h->ns_generation++;
	}
	lock_give(&h->ns_lock);
	return e != NULL;
}

void
shm_release_dead(struct shm *s, pid_t dead)
{
	/* A robust mutex is recovered by its next locker (EOWNERDEAD); nothing to
	 * force here, but say so in the log so the event is visible. */
	struct shm_header *h = s->base;

	if (h->ns_lock.owner == dead)
		log_warn("worker %d died holding the namespace lock; the next user recovers it", (int)dead);
}

void
shm_stats_sum(struct shm *s, struct stats *out)
{
	struct shm_header *h = s->base;

	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < h->nworkers; i++) {
		struct shm_worker *w = shm_worker(s, i);
#define X(name) out->name += w->st.name;
		STATS_FIELDS(X)
#undef X
	}
}
