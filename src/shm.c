/*
 * The shared region. Created once by the supervisor; workers inherit the
 * mapping across fork. The namespace table is open addressing keyed by a hash
 * of the id, guarded by a robust process-shared mutex: lookups are short
 * and uncontended, so a seqlock would buy nothing measurable here.
 *
 * The table has at least twice as many slots as it may hold namespaces
 * (--max-namespaces), so probes stay short and always meet an empty slot
 * unless tombstones fill the rest. A lookup probes past tombstones and
 * reservations and stops at an empty slot; an insert first makes sure the id
 * is absent (the same probe), then takes the first tombstone or empty slot
 * on the way, so every entry stays reachable from its home slot. A removal
 * leaves a tombstone, or an empty slot when the next slot is empty (no probe
 * can pass there), and then turns the tombstones just before it empty too.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
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

uint32_t
shm_ns_table_slots(uint32_t ns_limit)
{
	uint32_t cap = 16;

	if (ns_limit > SHM_NS_LIMIT_MAX)
		ns_limit = SHM_NS_LIMIT_MAX;
	while (cap < 2 * ns_limit)
		cap <<= 1;
	return cap;
}

struct shm *
shm_create(uint32_t nworkers, uint32_t ns_limit)
{
	return shm_create_ex(nworkers, ns_limit, 0, 0);
}

struct shm *
shm_create_ex(uint32_t nworkers, uint32_t ns_limit, size_t index_size, size_t ring_size)
{
	return shm_create_parts(nworkers, ns_limit, index_size, ring_size, 0);
}

struct shm *
shm_create_parts(uint32_t nworkers, uint32_t ns_limit, size_t index_size, size_t ring_size, size_t prof_size)
{
	struct shm *s;
	struct shm_header *h;
	size_t ns_off, w_off, ix_off, r_off, p_off, size;
	uint32_t cap = shm_ns_table_slots(ns_limit);

	if (ns_limit < 1 || ns_limit > SHM_NS_LIMIT_MAX) {
		errno = EINVAL;
		return NULL;
	}
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
	h->ns_limit = ns_limit;
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

/* Slot holding id (used or reserved), or NULL. Caller holds the lock. */
static struct shm_ns *
ns_find(struct shm *s, const char *id)
{
	struct shm_header *h = s->base;
	struct shm_ns *t = ns_table(s);
	uint32_t mask = h->ns_capacity - 1, i = ns_hash(id) & mask;

	for (uint32_t n = 0; n < h->ns_capacity; n++, i = (i + 1) & mask) {
		if (t[i].state == SHM_NS_EMPTY)
			return NULL;
		if ((t[i].state == SHM_NS_USED || t[i].state == SHM_NS_RESERVED) && strcmp(t[i].id, id) == 0)
			return &t[i];
	}
	return NULL;
}

/* A free slot (the first tombstone or empty one) on id's probe path, for an
 * id ns_find did not find; NULL when the table holds its limit. Caller holds
 * the lock. */
static struct shm_ns *
ns_free_slot(struct shm *s, const char *id)
{
	struct shm_header *h = s->base;
	struct shm_ns *t = ns_table(s);
	uint32_t mask = h->ns_capacity - 1, i = ns_hash(id) & mask;

	if (h->ns_count >= h->ns_limit)
		return NULL;
	for (uint32_t n = 0; n < h->ns_capacity; n++, i = (i + 1) & mask)
		if (t[i].state == SHM_NS_EMPTY || t[i].state == SHM_NS_DELETED)
			return &t[i];
	return NULL; /* not reached: the limit leaves half the slots */
}

/* Empties slot e (used or reserved). Caller holds the lock. */
static void
ns_vacate(struct shm *s, struct shm_ns *e)
{
	struct shm_header *h = s->base;
	struct shm_ns *t = ns_table(s);
	uint32_t mask = h->ns_capacity - 1, i = (uint32_t)(e - t);

	memset(e->token_hash, 0, 32);
	e->owner = 0;
	if (t[(i + 1) & mask].state != SHM_NS_EMPTY) {
		e->state = SHM_NS_DELETED;
	} else {
		/* nothing probes past an empty slot: neither this one nor the
		 * tombstones right before it are needed any more */
		e->state = SHM_NS_EMPTY;
		for (i = (i - 1) & mask; t[i].state == SHM_NS_DELETED; i = (i - 1) & mask)
			t[i].state = SHM_NS_EMPTY;
	}
	h->ns_count--;
}

int
shm_ns_put(struct shm *s, const char *id, const uint8_t token_hash[32])
{
	struct shm_header *h = s->base;
	struct shm_ns *e;
	int rc = 0;

	if (strlen(id) >= SHM_NS_ID_MAX)
		return -1;
	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL) {
		memcpy(e->token_hash, token_hash, 32);
		e->generation = ++h->ns_generation;
		e->owner = 0;
		e->state = SHM_NS_USED; /* a reservation becomes the namespace */
	} else if ((e = ns_free_slot(s, id)) != NULL) {
		strcpy(e->id, id);
		memcpy(e->token_hash, token_hash, 32);
		e->generation = ++h->ns_generation;
		e->owner = 0;
		e->state = SHM_NS_USED; /* last: a half-done insert is no entry */
		h->ns_count++;
	} else {
		rc = -1;
	}
	lock_give(&h->ns_lock);
	return rc;
}

enum shm_ns_reserve_result
shm_ns_reserve(struct shm *s, const char *id, uint64_t *ticket)
{
	struct shm_header *h = s->base;
	enum shm_ns_reserve_result rc = SHM_NS_RESERVE_PRESENT;
	struct shm_ns *e;

	*ticket = 0;
	if (strlen(id) >= SHM_NS_ID_MAX)
		return SHM_NS_RESERVE_PRESENT; /* not an id the store takes: let it say so */
	lock_take(&h->ns_lock);
	if (ns_find(s, id) == NULL) {
		e = ns_free_slot(s, id);
		if (e == NULL) {
			rc = SHM_NS_RESERVE_FULL;
		} else {
			strcpy(e->id, id);
			memset(e->token_hash, 0, 32);
			e->generation = *ticket = ++h->ns_generation;
			e->owner = getpid();
			e->state = SHM_NS_RESERVED; /* last, as in shm_ns_put */
			h->ns_count++;
			rc = SHM_NS_RESERVE_OK;
		}
	}
	lock_give(&h->ns_lock);
	return rc;
}

void
shm_ns_release(struct shm *s, const char *id, uint64_t ticket)
{
	struct shm_header *h = s->base;
	struct shm_ns *e;

	if (ticket == 0)
		return;
	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL && e->state == SHM_NS_RESERVED && e->generation == ticket)
		ns_vacate(s, e);
	lock_give(&h->ns_lock);
}

void
shm_ns_limit_message(struct shm *s, char *buf, size_t cap)
{
	struct shm_header *h = s->base;

	snprintf(buf, cap, "Namespace limit reached: this server holds at most %u namespaces (--max-namespaces)",
	         h->ns_limit);
}

bool
shm_ns_get(struct shm *s, const char *id, uint8_t token_hash[32])
{
	struct shm_header *h = s->base;
	struct shm_ns *e;

	lock_take(&h->ns_lock);
	e = ns_find(s, id);
	if (e != NULL && e->state != SHM_NS_USED)
		e = NULL;
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
	if (e != NULL && e->state != SHM_NS_USED)
		e = NULL;
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
	if (e != NULL && e->state != SHM_NS_USED)
		e = NULL;
	if (e != NULL) {
		ns_vacate(s, e);
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

	struct shm_ns *t = ns_table(s);
	uint32_t freed = 0;

	if (h->ns_lock.owner == dead)
		log_warn("worker %d died holding the namespace lock; the next user recovers it", (int)dead);
	/* A worker that died between reserving a namespace and creating it
	 * would hold that place until the next restart. */
	lock_take(&h->ns_lock);
	for (uint32_t i = 0; i < h->ns_capacity; i++)
		if (t[i].state == SHM_NS_RESERVED && t[i].owner == dead) {
			ns_vacate(s, &t[i]);
			freed++;
		}
	lock_give(&h->ns_lock);
	if (freed > 0)
		log_warn("worker %d died creating %u namespace(s); their places in the table are free again", (int)dead,
		         freed);
}

void
shm_stats_sum(struct shm *s, struct stats *out)
{
	struct shm_header *h = s->base;

	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < h->nworkers; i++) {
		struct shm_worker *w = shm_worker(s, i);
#define X(name, type, help) out->name += w->st.name;
		STATS_FIELDS(X)
#undef X
	}
}
