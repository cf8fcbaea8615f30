/*
 * Per-worker object pools: one named pool per object type, a free list of
 * fixed-size objects, a magic number checked on every put, and counters
 * reported in the worker's stats slot. Not shared between processes.
 */
#ifndef EVENTODB_POOL_H
#define EVENTODB_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool {
	const char *name;
	size_t objsize;
	size_t max_free;   /* free objects kept; the rest go back to malloc */
	void (*dtor)(void *obj); /* run before an object goes back to malloc */
	void *free_list;
	size_t nfree;
	uint64_t gets, misses, in_use, high_water;
	struct pool *next; /* registry of this process's pools */
};

void pool_init(struct pool *p, const char *name, size_t objsize, size_t max_free, void (*dtor)(void *));
/* An object of objsize bytes: zeroed when newly allocated, as it was put
 * when reused (so objects may keep buffers across uses). NULL when out of memory. */
void *pool_get(struct pool *p);
/* Returns obj (from pool_get of this pool) to the pool; aborts on a bad magic. */
void pool_put(struct pool *p, void *obj);
/* Frees the free list, running dtor (objects still in use stay allocated). */
void pool_drain(struct pool *p);
/* First pool of this process (walk with ->next). */
struct pool *pool_first(void);

#endif
